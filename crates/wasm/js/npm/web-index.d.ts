export * from "./tapeseal.js";
