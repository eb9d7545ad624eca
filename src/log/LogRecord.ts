/**
 * Record framing for append-only files (the event log and the spool): each record is
 *
 *   u32 BE payload length | u32 BE CRC-32 of the payload | payload
 *
 * and each file starts with a header record whose payload names the format and version. A
 * reader stops at the first frame that is short or whose CRC does not match: that is the torn
 * tail of a crash (or corruption), and everything from there on is cut, never misread.
 * Pure: no I/O.
 */
import * as Crc32 from "./Crc32.ts"

export const frameOverhead = 8

/** Records larger than this are refused on write and treated as corruption on read. */
export const maxPayload = 64 * 1024 * 1024

export const frame = (payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(frameOverhead + payload.length)
  writeFrameInto(out, 0, payload)
  return out
}

/** Writes the framed payload at `offset` of `target`; returns the offset after it. */
export const writeFrameInto = (target: Uint8Array, offset: number, payload: Uint8Array): number => {
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength)
  view.setUint32(offset, payload.length)
  view.setUint32(offset + 4, Crc32.compute(payload))
  target.set(payload, offset + frameOverhead)
  return offset + frameOverhead + payload.length
}

export type Scan =
  /** A whole, intact record. `next` is the offset just after it. */
  | { readonly _tag: "Record"; readonly payload: Uint8Array; readonly next: number }
  /** Not enough bytes yet for a whole record (a torn tail, or a file still being written). */
  | { readonly _tag: "Incomplete" }
  /** The frame is impossible or its CRC does not match. */
  | { readonly _tag: "Corrupt"; readonly reason: string }

/** Reads the record starting at `offset` of `bytes`. */
export const scan = (bytes: Uint8Array, offset: number): Scan => {
  if (bytes.length - offset < frameOverhead) return { _tag: "Incomplete" }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const length = view.getUint32(offset)
  const crc = view.getUint32(offset + 4)
  if (length > maxPayload) return { _tag: "Corrupt", reason: `record length ${length} exceeds ${maxPayload}` }
  const start = offset + frameOverhead
  const end = start + length
  if (end > bytes.length) return { _tag: "Incomplete" }
  if (Crc32.compute(bytes, start, end) !== crc) return { _tag: "Corrupt", reason: "CRC mismatch" }
  return { _tag: "Record", payload: bytes.subarray(start, end), next: end }
}

export interface ScanAll {
  readonly records: ReadonlyArray<{ readonly offset: number; readonly payload: Uint8Array }>
  /** Offset just after the last intact record: where a writer resumes, and where a repair cuts. */
  readonly validEnd: number
  /** Why the scan stopped before the end of `bytes`, if it did. */
  readonly stop: { readonly offset: number; readonly reason: string } | undefined
}

export const scanAll = (bytes: Uint8Array, offset = 0): ScanAll => {
  const records: Array<{ offset: number; payload: Uint8Array }> = []
  let at = offset
  while (at < bytes.length) {
    const result = scan(bytes, at)
    if (result._tag === "Record") {
      records.push({ offset: at, payload: result.payload })
      at = result.next
      continue
    }
    const reason = result._tag === "Corrupt" ? result.reason : "torn record at end of file"
    return { records, validEnd: at, stop: { offset: at, reason } }
  }
  return { records, validEnd: at, stop: undefined }
}
