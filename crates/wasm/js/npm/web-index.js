// Browser and bundler entry: loads the WebAssembly module once, then exports the API.
import init from "./tapeseal.js";

await init();

export * from "./tapeseal.js";
