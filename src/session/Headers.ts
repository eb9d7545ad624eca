/**
 * The header section of a message as it streams in (RFC 5322 2.2): collected from the content's
 * first bytes up to the empty line, unfolded, for the rules of the data stage, and as much of
 * the body as they may see (`bodyLimit`). Bounded: at most `maxBytes` of header text and
 * `maxHeaders` fields are kept, so a message that is all header cannot grow memory; the rest of
 * the content passes by untouched. Pure.
 */

import * as Bytes from "./Bytes.ts"

export interface Header {
  readonly name: string
  readonly value: string
}

export const maxBytes = 64 * 1024
export const maxHeaders = 500

const decoder = new TextDecoder("utf-8")

/** Unfolded fields of a header block (CRLF or LF line ends); a line without a colon ends it. */
export const parse = (text: string): Array<Header> => {
  const headers: Array<Header> = []
  for (const line of text.split(/\r?\n/)) {
    if (line === "") break
    const last = headers[headers.length - 1]
    if ((line.startsWith(" ") || line.startsWith("\t")) && last !== undefined) {
      headers[headers.length - 1] = { name: last.name, value: `${last.value} ${line.trim()}` }
      continue
    }
    const colon = line.indexOf(":")
    if (colon <= 0) break
    if (headers.length >= maxHeaders) break
    headers.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() })
  }
  return headers
}

/** Header lines as they go above a message, each ended with CRLF. */
export const format = (headers: ReadonlyArray<Header>): string =>
  headers.map((header) => `${header.name}: ${header.value}\r\n`).join("")

/** The domain of a field's (first) address, as in From ("Name <user@domain>" or "user@domain"), lower-cased. */
export const addressDomain = (value: string | undefined): string | undefined => {
  const address = value?.match(/<([^>]*)>/)?.[1] ?? value
  const at = address?.lastIndexOf("@") ?? -1
  return address === undefined || at < 0 ? undefined : address.slice(at + 1).trim().toLowerCase() || undefined
}

/** The first value of the field `name` (case-insensitive), if any. */
export const first = (headers: ReadonlyArray<Header>, name: string): string | undefined => {
  const wanted = name.toLowerCase()
  return headers.find((h) => h.name.toLowerCase() === wanted)?.value
}

/** Collects a message's header block, and the start of its body, from its content chunks, in order. */
export interface Collector {
  readonly push: (bytes: Uint8Array) => void
  /** The fields seen so far (all of them once the empty line has passed). */
  readonly headers: () => Array<Header>
  /** The body's first bytes (at most the collector's `bodyLimit`), and whether it goes on. */
  readonly body: () => { readonly bytes: Uint8Array; readonly truncated: boolean }
}

/**
 * A collector keeping the header section and up to `bodyLimit` bytes of the body. A header
 * section longer than `maxBytes` keeps its first `maxBytes` and no body: where the body starts
 * is then unknown.
 */
export const collector = (bodyLimit = 0): Collector => {
  const chunks: Array<Uint8Array> = []
  let kept = 0
  let done = false
  let bodyStarted = false
  const bodyChunks: Array<Uint8Array> = []
  let bodyKept = 0
  let truncated = false
  const keepBody = (bytes: Uint8Array): void => {
    const room = bodyLimit - bodyKept
    if (bytes.length > room) truncated = true
    if (room <= 0) return
    // A copy, so that a few kept bytes do not hold a whole read buffer in memory.
    const slice = bytes.slice(0, Math.min(room, bytes.length))
    bodyChunks.push(slice)
    bodyKept += slice.length
  }
  // Bytes of the current line other than CR: an LF that ends an empty line ends the header.
  let lineLength = 0
  return {
    push: (bytes) => {
      if (bodyStarted) return keepBody(bytes)
      if (done) return
      const room = maxBytes - kept
      const slice = bytes.length > room ? bytes.subarray(0, room) : bytes
      for (let i = 0; i < slice.length; i++) {
        const byte = slice[i]
        if (byte === 0x0a) {
          if (lineLength === 0) {
            done = true
            chunks.push(slice.subarray(0, i + 1))
            kept += i + 1
            if (bodyLimit > 0) {
              bodyStarted = true
              keepBody(bytes.subarray(i + 1))
            }
            return
          }
          lineLength = 0
        } else if (byte !== 0x0d) {
          lineLength++
        }
      }
      chunks.push(slice)
      kept += slice.length
      if (kept >= maxBytes) done = true
    },
    headers: () => parse(decoder.decode(Bytes.concat(chunks))),
    body: () => ({ bytes: Bytes.concat(bodyChunks), truncated })
  }
}
