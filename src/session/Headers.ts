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
  // A quoted display name may hold anything, an address included: it is not the address.
  const unquoted = value?.replace(/"(?:[^"\\]|\\.)*"/g, "")
  const address = unquoted?.match(/<([^>]*)>/)?.[1] ?? unquoted
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

/** Whether a complete header line (CRLF or LF ended) continues the section: a field or a fold. */
const isHeaderLine = (line: Uint8Array): boolean => {
  const first = line[0]
  if (first === 0x20 || first === 0x09) return true
  // A field name: printable US-ASCII but the colon (RFC 5322 2.2), then the colon.
  for (let i = 0; i < line.length; i++) {
    const byte = line[i] ?? 0
    if (byte === 0x3a) return i > 0
    if (byte < 0x21 || byte > 0x7e) return false
  }
  return false
}

const isEmptyLine = (line: Uint8Array): boolean =>
  line.length === 1 ? line[0] === 0x0a : line.length === 2 && line[0] === 0x0d && line[1] === 0x0a

/**
 * A collector keeping the header section and up to `bodyLimit` bytes of the body. The header
 * section ends at the empty line, or (as mail readers take it) at the first line that is neither
 * a field nor a fold, which is then the body's first line. A header section longer than
 * `maxBytes` is cut there, and what follows counts as body: a rule looking at the body sees
 * what a padded header section tried to push out of its reach.
 */
export const collector = (bodyLimit = 0): Collector => {
  const chunks: Array<Uint8Array> = []
  let kept = 0
  let inBody = false
  // The header line being received, in pieces (copies: read buffers are reused and large).
  let line: Array<Uint8Array> = []
  let lineLength = 0
  const bodyChunks: Array<Uint8Array> = []
  let bodyKept = 0
  let truncated = false
  const keepBody = (bytes: Uint8Array): void => {
    if (bytes.length === 0 || bodyLimit === 0) return
    const room = bodyLimit - bodyKept
    if (bytes.length > room) truncated = true
    if (room <= 0) return
    const slice = bytes.slice(0, Math.min(room, bytes.length))
    bodyChunks.push(slice)
    bodyKept += slice.length
  }
  const startBody = (first: Uint8Array): void => {
    inBody = true
    line = []
    lineLength = 0
    keepBody(first)
  }
  return {
    push: (bytes) => {
      let from = 0
      while (from < bytes.length && !inBody) {
        const newline = bytes.indexOf(0x0a, from)
        const end = newline < 0 ? bytes.length : newline + 1
        const piece = bytes.slice(from, end)
        from = end
        if (kept + lineLength + piece.length > maxBytes) {
          // Too long a header section: it ends here, and the line in progress starts the body.
          startBody(Bytes.concat([...line, piece]))
          break
        }
        if (newline < 0) {
          line.push(piece)
          lineLength += piece.length
          break
        }
        // Most lines arrive whole: no joining then.
        const complete = line.length === 0 ? piece : Bytes.concat([...line, piece])
        line = []
        lineLength = 0
        if (isEmptyLine(complete)) {
          chunks.push(complete)
          kept += complete.length
          inBody = true
        } else if (isHeaderLine(complete)) {
          chunks.push(complete)
          kept += complete.length
        } else {
          startBody(complete)
        }
      }
      if (inBody && from < bytes.length) keepBody(bytes.subarray(from))
    },
    headers: () => {
      // A last field without its line end (the content ended on it) still counts.
      const pending = inBody ? undefined : Bytes.concat(line)
      const all = pending !== undefined && pending.length > 0 && isHeaderLine(pending) ? [...chunks, pending] : chunks
      return parse(decoder.decode(Bytes.concat(all)))
    },
    body: () => ({ bytes: Bytes.concat(bodyChunks), truncated })
  }
}
