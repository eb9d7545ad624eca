/**
 * The message the load generator sends: headers and a body of printable lines adding up to a
 * requested size, CRLF line endings, dot-stuffed, with the terminating `.` line. Built once per
 * worker and written as is for every message.
 *
 * Pure.
 */

/** Bytes of ASCII text (the message is ASCII by construction). */
const ascii = (text: string): Uint8Array => {
  const out = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f
  return out
}

/**
 * Doubles a leading dot on every line (RFC 5321 4.5.2). `text` has CRLF line endings; its
 * first line counts as a line start.
 */
export const dotStuff = (text: string): string => (text.startsWith(".") ? "." : "") + text.replaceAll("\r\n.", "\r\n..")

const lineWidth = 76
const filler = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
// Every this many body lines one starts with a dot, so the receiver's unstuffing does real work.
const dotLineEvery = 16

/**
 * The unstuffed message of `size` bytes (CRLF included): the headers, then body lines up to the
 * size. A size smaller than the headers gives just the headers.
 */
export const content = (size: number, from: string, to: string): string => {
  const headers = [
    `From: <${from}>`,
    `To: <${to}>`,
    "Subject: postern bench",
    "Message-ID: <bench@postern.test>",
    "Date: Thu, 1 Jan 2026 00:00:00 +0000",
    "",
    ""
  ].join("\r\n")
  const body: Array<string> = []
  let remaining = size - headers.length
  let index = 0
  while (remaining > 0) {
    // A line is its text and CRLF; the last one is cut to what remains (at least one character).
    const width = Math.max(1, Math.min(lineWidth, remaining - 2))
    let line = ""
    while (line.length < width) line += filler
    line = line.slice(0, width)
    if (index % dotLineEvery === dotLineEvery - 1) line = `.${line.slice(1)}`
    body.push(`${line}\r\n`)
    remaining -= width + 2
    index += 1
  }
  return headers + body.join("")
}

/** What is written after the 354: the dot-stuffed message and the final `.` line. */
export const dataBytes = (size: number, from: string, to: string): Uint8Array =>
  ascii(`${dotStuff(content(size, from, to))}.\r\n`)
