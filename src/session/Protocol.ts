/**
 * The SMTP protocol as data, after Postfix's command table: what each verb may do, so the
 * machine and the session consult flags instead of special-casing verbs.
 */
import type * as Command from "./Command.ts"

export interface CommandFlags {
  /** May be used before TLS on a listener whose security level is `encrypt` (RFC 3207). */
  readonly allowedBeforeTls: boolean
  /** RFC 2920: must be the last command of a pipelined group; replies are flushed after it. */
  readonly endsGroup: boolean
  /** A rejection of this command counts toward the session's error limit. */
  readonly countsAsError: boolean
}

const flags = (allowedBeforeTls: boolean, endsGroup: boolean, countsAsError: boolean): CommandFlags => ({
  allowedBeforeTls,
  endsGroup,
  countsAsError
})

export const table: { readonly [V in Command.Verb]: CommandFlags } = {
  Ehlo: flags(true, true, true),
  Helo: flags(true, true, true),
  Starttls: flags(true, true, true),
  Noop: flags(true, true, false),
  Rset: flags(true, false, false),
  Quit: flags(true, true, false),
  Help: flags(true, false, false),
  Mail: flags(false, false, true),
  Rcpt: flags(false, false, true),
  Data: flags(false, true, true),
  Bdat: flags(false, false, true),
  Vrfy: flags(false, true, true),
  Expn: flags(false, true, true),
  Auth: flags(false, true, true)
}

export const flagsOf = (verb: Command.Verb): CommandFlags => table[verb]

/** EHLO keywords in the order they are advertised; SIZE carries the limit. */
export const ehloKeywords = (
  maxMessageSize: number,
  offers: { readonly startTls: boolean; readonly auth?: ReadonlyArray<string> }
): ReadonlyArray<string> => [
  "PIPELINING",
  `SIZE ${maxMessageSize}`,
  ...(offers.startTls ? ["STARTTLS"] : []),
  ...(offers.auth === undefined || offers.auth.length === 0 ? [] : [`AUTH ${offers.auth.join(" ")}`]),
  "8BITMIME",
  "ENHANCEDSTATUSCODES",
  "SMTPUTF8",
  "CHUNKING"
]
