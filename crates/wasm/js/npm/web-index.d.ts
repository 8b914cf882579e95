export * from "./tapeseal.js";
export * from "./webcrypto.js";
