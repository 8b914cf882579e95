// Node CommonJS entry: the wasm-bindgen build (it loads the WebAssembly module
// synchronously) and the WebCrypto path.
module.exports = { ...require("./tapeseal.js"), ...require("./webcrypto.cjs") };
