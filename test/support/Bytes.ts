/** Byte helpers shared by tests: those of the source. */
export { concat } from "../../src/session/Bytes.ts"
