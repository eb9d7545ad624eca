/**
 * SMTP replies (RFC 5321 section 4.2) with RFC 3463 enhanced status codes.
 *
 * Every reply Postern sends carries an enhanced code, so the type requires one; the only
 * exception RFC 2034 allows is the greeting, which is still given one here for uniformity
 * of the event log ("220 2.0.0" is not sent: the greeting has `enhanced: undefined`).
 */

export interface Reply {
  readonly code: number
  /** RFC 3463 class.subject.detail, e.g. "5.5.2"; absent only for the greeting and EHLO lines. */
  readonly enhanced: string | undefined
  readonly lines: ReadonlyArray<string>
}

export const make = (code: number, enhanced: string | undefined, ...lines: ReadonlyArray<string>): Reply => ({
  code,
  enhanced,
  lines: lines.length === 0 ? [""] : lines
})

/** A multi-line reply where only the first line carries the enhanced code text (EHLO keywords). */
export const multiline = (code: number, lines: ReadonlyArray<string>): Reply => ({ code, enhanced: undefined, lines })

const encoder = new TextEncoder()

/** The reply as it goes on the wire: `code-text` continuation lines, `code text` last line, CRLF each. */
export const format = (reply: Reply): string => {
  const prefix = reply.enhanced === undefined ? "" : `${reply.enhanced} `
  const last = reply.lines.length - 1
  let out = ""
  for (let i = 0; i <= last; i++) {
    const line = reply.lines[i] ?? ""
    const text = i === 0 || reply.enhanced !== undefined ? `${prefix}${line}` : line
    const formatted = `${reply.code}${i === last ? " " : "-"}${text}`
    // RFC 4954's continue-req is "334" SP [base64]: its space stays even with no challenge.
    out += (reply.code === 334 ? formatted : formatted.trimEnd()) + "\r\n"
  }
  return out
}

export const encode = (reply: Reply): Uint8Array => encoder.encode(format(reply))

/** True when the reply ends the connection on the server's side by convention (421, 221). */
export const closesConnection = (reply: Reply): boolean => reply.code === 421 || reply.code === 221

export const isPositive = (reply: Reply): boolean => reply.code < 400
