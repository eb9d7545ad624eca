/** Byte helpers and the ASCII bytes the protocol parsers look for. Pure. */

export const HT = 0x09
export const LF = 0x0a
export const CR = 0x0d
export const SP = 0x20
export const DOT = 0x2e
export const COLON = 0x3a
export const LT = 0x3c

/** The parts one after the other, in a new array. */
export const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}
