/**
 * CRC-32 (IEEE 802.3, the zlib polynomial), table-driven. Pure, so record framing can stay
 * free of `node:*`; node's `zlib.crc32` gives the same values and the tests check that.
 */

const table = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

export const update = (crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number => {
  let c = ~crc >>> 0
  for (let i = start; i < end; i++) c = (table[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8)
  return ~c >>> 0
}

export const compute = (bytes: Uint8Array, start = 0, end = bytes.length): number => update(0, bytes, start, end)
