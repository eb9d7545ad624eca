/**
 * The header section of a message as it streams in (RFC 5322 2.2): collected from the content's
 * first bytes up to the empty line, unfolded, for the rules of the data stage, and as much of
 * the body as they may see (`bodyLimit`). Bounded: at most `maxBytes` of header text and
 * `maxHeaders` fields are kept, so a message that is all header cannot grow memory; the rest of
 * the content passes by untouched. Pure.
 */

import { COLON, concat, CR, HT, LF, SP } from "./Bytes.ts"

export interface Header {
  readonly name: string
  readonly value: string
}

export const maxBytes = 64 * 1024
/** Fields kept: `maxBytes` bounds memory; this bounds the work of looking one up. */
export const maxHeaders = 4096

const decoder = new TextDecoder("utf-8")

/** Unfolded fields of a header block (CRLF or LF line ends) up to its empty line; lines that are no field are skipped. */
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
    if (colon <= 0) continue
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

/** Text made safe inside a header field's comment: no parentheses, no line breaks. */
export const commentText = (text: string): string => text.replace(/[()\r\n]/g, " ")

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
 * Whether `bytes[start, end)`, a line, is a field (RFC 5322 2.2: a name of printable US-ASCII
 * but the colon, then the colon; 4.5.3 allows white space before it) or a fold of one.
 */
const isFieldLine = (bytes: Uint8Array, start: number, end: number): boolean => {
  const first = bytes[start]
  if (first === SP || first === HT) return true
  let i = start
  while (i < end) {
    const byte = bytes[i] ?? 0
    if (byte === COLON || byte < 0x21 || byte > 0x7e) break
    i++
  }
  if (i === start) return false
  while (i < end && (bytes[i] === SP || bytes[i] === HT)) i++
  return i < end && bytes[i] === COLON
}

const isEmptyLine = (bytes: Uint8Array, start: number, end: number): boolean =>
  end - start === 1 ? bytes[start] === LF : end - start === 2 && bytes[start] === CR && bytes[start + 1] === LF

/**
 * A collector of the header section and up to `bodyLimit` bytes of the body, read as
 * generously as either a mail reader or a verifier might:
 *
 * - the header section runs to the empty line, and header rules see every field in it, as
 *   mailauth (DKIM, DMARC) does;
 * - the body starts at the empty line, or at the first line before it that is neither a field
 *   nor a fold, which mail readers show as the body's first line: body rules see from there;
 * - a header section longer than `maxBytes` ends there for header rules, and what follows is
 *   body to body rules, so padding cannot push content out of their reach.
 *
 * Header bytes are copied into one buffer that grows as needed (to `maxBytes`); nothing is
 * kept per line.
 */
export const collector = (bodyLimit = 0): Collector => {
  let head = new Uint8Array(0)
  let length = 0
  // Where the line being received starts in `head`.
  let lineStart = 0
  /** Past the empty line (or `maxBytes`): everything is body. */
  let headerDone = false
  /** A line that is not a field came: body rules see from it on. */
  let bodyStarted = false
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
  const append = (bytes: Uint8Array, from: number, end: number): void => {
    const needed = length + end - from
    if (needed > head.length) {
      const grown = new Uint8Array(Math.min(maxBytes, Math.max(needed, head.length * 2, 1024)))
      grown.set(head.subarray(0, length))
      head = grown
    }
    head.set(bytes.subarray(from, end), length)
    length = needed
  }
  return {
    push: (bytes) => {
      let from = 0
      while (from < bytes.length && !headerDone) {
        const newline = bytes.indexOf(LF, from)
        const end = newline < 0 ? bytes.length : newline + 1
        if (length + end - from > maxBytes) {
          // Too long a header section: it ends here; the line in progress and the rest are body.
          keepBody(head.subarray(lineStart, length))
          keepBody(bytes.subarray(from))
          length = lineStart
          headerDone = true
          return
        }
        append(bytes, from, end)
        from = end
        if (newline < 0) return
        const start = lineStart
        lineStart = length
        if (isEmptyLine(head, start, length)) {
          if (bodyStarted) keepBody(head.subarray(start, length))
          headerDone = true
        } else if (!isFieldLine(head, start, length)) {
          // Not a field: the body (as a reader shows it) starts here; the header section goes on
          // to the empty line for header rules, without this line.
          bodyStarted = true
          keepBody(head.subarray(start, length))
          length = start
          lineStart = start
        } else if (bodyStarted) {
          keepBody(head.subarray(start, length))
        }
      }
      if (from < bytes.length) keepBody(bytes.subarray(from))
    },
    headers: () => {
      // A last field without its line end (the content ended on it) still counts.
      const end = !headerDone && lineStart < length && !isFieldLine(head, lineStart, length) ? lineStart : length
      return parse(decoder.decode(head.subarray(0, end)))
    },
    body: () => ({ bytes: concat(bodyChunks), truncated })
  }
}
