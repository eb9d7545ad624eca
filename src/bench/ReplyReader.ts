/**
 * The load generator's SMTP reply reader: bytes in, complete replies out, incrementally, so a
 * reply split anywhere (even inside CRLF) comes out once whole. Multi-line replies (`250-...`)
 * end at the first line of the same code with a space or nothing after it (`250 ...`, `250`).
 *
 * Pure and allocation-light: it runs once per read in the benchmark's hot loop, so it keeps
 * no Effect and builds strings only for finished lines.
 */
import { Schema } from "effect"
import { CR, LF, SP } from "../session/Bytes.ts"

/** One SMTP reply: its code and the text of each line (without code and separator). */
export interface Reply {
  readonly code: number
  readonly lines: ReadonlyArray<string>
}

/** Input that is not an SMTP reply: a line without a three-digit code, or one too long. */
export class MalformedReply extends Schema.TaggedError<MalformedReply>()("MalformedReply", {
  message: Schema.String
}) {}

/** An incremental reader; {@link make} builds one per connection. */
export interface Reader {
  /**
   * Consumes a chunk and returns the replies it completed, in order (usually none or one).
   * Throws {@link MalformedReply} on input that cannot be a reply; the reader is then spent.
   */
  readonly feed: (chunk: Uint8Array) => Array<Reply>
  /** Bytes held that do not yet form a complete reply (must be 0 at STARTTLS). */
  readonly pending: () => number
}

const zero = 48
const dash = 45

/** Latin-1 text of bytes[start, end): replies are ASCII, and latin-1 never fails. */
const text = (bytes: Uint8Array, start: number, end: number): string => {
  let out = ""
  for (let i = start; i < end; i++) out += String.fromCharCode(bytes[i] ?? 0)
  return out
}

const digit = (byte: number | undefined): number => (byte !== undefined && byte >= zero && byte <= zero + 9 ? byte - zero : -1)

/**
 * A reader that accepts lines of at most `maxLineLength` bytes (CRLF included). Bare LF ends a
 * line too: the reader is a measuring tool, not a conformance checker.
 */
export const make = (maxLineLength = 4096): Reader => {
  // Bytes of the current, unfinished line.
  let partial = new Uint8Array(256)
  let partialLength = 0
  // Lines of the current, unfinished multi-line reply.
  let code = -1
  let lines: Array<string> = []
  let spent = false

  const fail = (message: string): never => {
    spent = true
    throw new MalformedReply({ message })
  }

  // Handles one complete line bytes[start, end) without its line ending; returns a reply when
  // the line was the last of one.
  const line = (bytes: Uint8Array, start: number, end: number): Reply | undefined => {
    const d0 = digit(bytes[start])
    const d1 = digit(bytes[start + 1])
    const d2 = digit(bytes[start + 2])
    const separator = end - start > 3 ? bytes[start + 3] : SP
    if (d0 < 1 || d1 < 0 || d2 < 0 || (separator !== SP && separator !== dash)) {
      return fail(`not an SMTP reply line: ${JSON.stringify(text(bytes, start, Math.min(end, start + 80)))}`)
    }
    const lineCode = d0 * 100 + d1 * 10 + d2
    if (code !== -1 && lineCode !== code) {
      return fail(`reply code changed from ${code} to ${lineCode} inside a multi-line reply`)
    }
    code = lineCode
    lines.push(end - start > 4 ? text(bytes, start + 4, end) : "")
    if (separator === dash) return undefined
    const reply: Reply = { code, lines }
    code = -1
    lines = []
    return reply
  }

  const lineEnd = (bytes: Uint8Array, start: number, newline: number): number =>
    newline > start && bytes[newline - 1] === CR ? newline - 1 : newline

  const hold = (bytes: Uint8Array, start: number, end: number) => {
    const needed = partialLength + end - start
    if (needed > maxLineLength) fail(`reply line longer than ${maxLineLength} bytes`)
    if (needed > partial.length) {
      const grown = new Uint8Array(Math.min(maxLineLength, Math.max(needed, partial.length * 2)))
      grown.set(partial.subarray(0, partialLength))
      partial = grown
    }
    partial.set(bytes.subarray(start, end), partialLength)
    partialLength = needed
  }

  const feed = (chunk: Uint8Array): Array<Reply> => {
    if (spent) return fail("reader already failed")
    const replies: Array<Reply> = []
    let start = 0
    while (start < chunk.length) {
      const newline = chunk.indexOf(LF, start)
      if (newline === -1) {
        hold(chunk, start, chunk.length)
        break
      }
      let reply: Reply | undefined
      if (partialLength === 0) {
        if (newline + 1 - start > maxLineLength) fail(`reply line longer than ${maxLineLength} bytes`)
        reply = line(chunk, start, lineEnd(chunk, start, newline))
      } else {
        hold(chunk, start, newline + 1)
        const whole = partial
        const length = partialLength
        partialLength = 0
        reply = line(whole, 0, lineEnd(whole, 0, length - 1))
      }
      if (reply !== undefined) replies.push(reply)
      start = newline + 1
    }
    return replies
  }

  const pending = (): number => {
    let held = partialLength
    for (const l of lines) held += l.length + 6
    return held
  }

  return { feed, pending }
}
