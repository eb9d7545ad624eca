/**
 * The RFC 5321 section 4.4 trace header Postern prepends to every message it accepts, in the
 * shape Postfix writes it so that tools parsing trace headers keep working:
 *
 *   Received: from helo.example (client.example [192.0.2.1])
 *           by mx.example (Postern) with ESMTP id 4F2A1C3B0A
 *           for <user@example.org>; Sun, 22 Nov 2026 03:10:53 +0000
 *
 * Pure: the date is formatted from the recorded milliseconds, in UTC.
 */

export interface ReceivedFacts {
  readonly helo: string | undefined
  /** The client's reverse DNS name, when reverse lookups are on and one was found. */
  readonly clientName: string | undefined
  readonly clientAddress: string
  readonly hostname: string
  /** RFC 3848 protocol: ESMTP, ESMTPS, ESMTPA, ESMTPSA, SMTP, UTF8SMTP... */
  readonly protocol: string
  /** A comment with TLS facts, e.g. "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". */
  readonly tlsComment: string | undefined
  readonly queueId: string
  /** Named only for a single recipient, so the header does not disclose a list of recipients. */
  readonly recipient: string | undefined
  readonly at: number
}

const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const two = (n: number): string => (n < 10 ? `0${n}` : `${n}`)

/** RFC 5322 date-time in UTC. */
export const formatDate = (at: number): string => {
  const d = new Date(at)
  return `${days[d.getUTCDay()]}, ${d.getUTCDate()} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`
}

/** Keeps client-supplied text from breaking out of the header (no CR, LF, or comment parentheses). */
const sanitize = (text: string): string => text.replace(/[\u0000-\u001f\u007f()]/g, "?").slice(0, 255)

export const format = (facts: ReceivedFacts): string => {
  const helo = facts.helo === undefined ? "unknown" : sanitize(facts.helo)
  const client = `${facts.clientName === undefined ? "unknown" : sanitize(facts.clientName)} [${facts.clientAddress}]`
  const tls = facts.tlsComment === undefined ? "" : `\r\n\t(${facts.tlsComment})`
  const forClause = facts.recipient === undefined ? "" : `\r\n\tfor <${sanitize(facts.recipient)}>`
  return `Received: from ${helo} (${client})${tls}\r\n\tby ${facts.hostname} (Postern) with ${facts.protocol} id ${facts.queueId}` +
    `${forClause}; ${formatDate(facts.at)}\r\n`
}
