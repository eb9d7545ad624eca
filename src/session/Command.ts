/**
 * SMTP commands as typed values, and the parser from one command line to a command or to the
 * reply its syntax error deserves. Pure: no I/O, no Effect runtime.
 *
 * The parser walks the line by index and char code; it allocates the strings of the result, the
 * upper-cased verb and parameter keywords, and nothing per character. Fixed replies are built
 * once at module load.
 */
import * as Address from "./Address.ts"
import * as Reply from "./Reply.ts"
import { LT, SP } from "./Bytes.ts"

/** The BODY parameter of MAIL (RFC 6152 8BITMIME, RFC 3030 BINARYMIME). */
export type Body = "7BIT" | "8BITMIME" | "BINARYMIME"

/** The ESMTP parameters of MAIL that Postern supports. */
export interface MailParameters {
  readonly size: number | undefined
  readonly body: Body | undefined
  readonly smtputf8: boolean
}

/** One parsed command line. */
export type Command =
  | { readonly _tag: "Ehlo"; readonly domain: string }
  | { readonly _tag: "Helo"; readonly domain: string }
  | { readonly _tag: "Mail"; readonly from: Address.ReversePath; readonly parameters: MailParameters }
  | { readonly _tag: "Rcpt"; readonly to: Address.ForwardPath }
  | { readonly _tag: "Data" }
  | { readonly _tag: "Bdat"; readonly size: number; readonly last: boolean }
  | { readonly _tag: "Rset" }
  | { readonly _tag: "Noop" }
  | { readonly _tag: "Quit" }
  | { readonly _tag: "Vrfy"; readonly argument: string }
  | { readonly _tag: "Expn"; readonly argument: string }
  | { readonly _tag: "Help"; readonly argument: string }
  | { readonly _tag: "Starttls" }
  | { readonly _tag: "Auth"; readonly mechanism: string; readonly initialResponse: string | undefined }

/** The tag of a command, known even when its arguments are wrong. */
export type Verb = Command["_tag"]

/** What the parser needs to know of the session to judge a line. */
export interface ParseContext {
  /** The current transaction was opened with MAIL ... SMTPUTF8 (RFC 6531): UTF-8 allowed in RCPT. */
  readonly smtputf8: boolean
}

/** A command, or the reply a line that is not one deserves. */
export type ParseResult =
  | { readonly _tag: "Parsed"; readonly command: Command }
  /** The verb was recognised but its arguments are wrong; `verb` lets the machine apply its flags. */
  | { readonly _tag: "Invalid"; readonly verb: Verb; readonly reply: Reply.Reply }
  | { readonly _tag: "Unknown"; readonly reply: Reply.Reply }

// ---------------------------------------------------------------------------------------------

const EQUALS = 0x3d

const verbs: ReadonlyMap<string, Verb> = new Map<string, Verb>([
  ["EHLO", "Ehlo"],
  ["HELO", "Helo"],
  ["MAIL", "Mail"],
  ["RCPT", "Rcpt"],
  ["DATA", "Data"],
  ["BDAT", "Bdat"],
  ["RSET", "Rset"],
  ["NOOP", "Noop"],
  ["QUIT", "Quit"],
  ["VRFY", "Vrfy"],
  ["EXPN", "Expn"],
  ["HELP", "Help"],
  ["STARTTLS", "Starttls"],
  ["AUTH", "Auth"]
])
const longestVerb = 8

const syntax = (usage: string): Reply.Reply => Reply.make(501, "5.5.4", `Syntax: ${usage}`)

/** The fixed replies of the parser. */
export const replies = {
  unknown: Reply.make(500, "5.5.2", "Error: command not recognized"),
  controlCharacters: Reply.make(501, "5.5.2", "Error: control characters not allowed"),
  ehlo: syntax("EHLO hostname"),
  helo: syntax("HELO hostname"),
  mail: syntax("MAIL FROM:<address>"),
  rcpt: syntax("RCPT TO:<address>"),
  data: syntax("DATA"),
  rset: syntax("RSET"),
  quit: syntax("QUIT"),
  starttls: syntax("STARTTLS"),
  vrfy: syntax("VRFY address"),
  expn: syntax("EXPN address"),
  bdat: syntax("BDAT size [LAST]"),
  auth: syntax("AUTH mechanism"),
  badSender: Reply.make(501, "5.1.7", "Bad sender address syntax"),
  badRecipient: Reply.make(501, "5.1.3", "Bad recipient address syntax"),
  badSize: Reply.make(501, "5.5.4", "Bad SIZE parameter"),
  badBody: Reply.make(501, "5.5.4", "Bad BODY parameter"),
  badSmtputf8: Reply.make(501, "5.5.4", "Bad SMTPUTF8 parameter"),
  duplicate: Reply.make(501, "5.5.4", "Duplicate parameter"),
  smtputf8Required: Reply.make(553, "5.6.7", "SMTPUTF8 is required for a non-ASCII address")
} as const

/** The reply to an ESMTP parameter Postern does not support. */
export const unsupportedOption = (keyword: string): Reply.Reply =>
  Reply.make(555, "5.5.4", `Unsupported option: ${keyword}`)

const unknown: ParseResult = { _tag: "Unknown", reply: replies.unknown }
const unknownControl: ParseResult = { _tag: "Unknown", reply: replies.controlCharacters }

const parsed = (command: Command): ParseResult => ({ _tag: "Parsed", command })
const invalid = (verb: Verb, reply: Reply.Reply): ParseResult => ({ _tag: "Invalid", verb, reply })

const data = parsed({ _tag: "Data" })
const rset = parsed({ _tag: "Rset" })
const noop = parsed({ _tag: "Noop" })
const quit = parsed({ _tag: "Quit" })
const starttls = parsed({ _tag: "Starttls" })

/** Below 0x20 (TAB included) or DEL: never legitimate in a command line. */
const hasControl = (line: string): boolean => {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i)
    if (c < SP || c === 0x7f) return true
  }
  return false
}

/** line[i, i + word.length) equals `word` (upper case, letters and punctuation) in any case. */
const matchesIgnoringCase = (line: string, i: number, end: number, word: string): boolean => {
  if (end - i < word.length) return false
  for (let k = 0; k < word.length; k++) {
    const w = word.charCodeAt(k)
    const c = line.charCodeAt(i + k)
    if (c !== w && !(w >= 0x41 && w <= 0x5a && c === (w | 0x20))) return false
  }
  return true
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

const isAlnum = (c: number): boolean => isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)

/** The index of the next SP at or after i, or end. */
const tokenEnd = (line: string, i: number, end: number): number => {
  while (i < end && line.charCodeAt(i) !== SP) i++
  return i
}

const skipSpaces = (line: string, i: number, end: number): number => {
  while (i < end && line.charCodeAt(i) === SP) i++
  return i
}

/** esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") (RFC 5321 4.1.2). */
const isKeyword = (line: string, from: number, to: number): boolean => {
  if (from === to || !isAlnum(line.charCodeAt(from))) return false
  for (let i = from + 1; i < to; i++) {
    const c = line.charCodeAt(i)
    if (!isAlnum(c) && c !== 0x2d) return false
  }
  return true
}

/** The "=" of a parameter token, or -1. */
const equalsIn = (line: string, from: number, to: number): number => {
  for (let i = from; i < to; i++) {
    if (line.charCodeAt(i) === EQUALS) return i
  }
  return -1
}

/** 1*DIGIT as a number, clamped to MAX_SAFE_INTEGER; undefined when not all digits. */
const sizeValue = (line: string, from: number, to: number): number | undefined => {
  if (from === to) return undefined
  for (let i = from; i < to; i++) {
    if (!isDigit(line.charCodeAt(i))) return undefined
  }
  return Math.min(Number(line.slice(from, to)), Number.MAX_SAFE_INTEGER)
}

const bodyValue = (value: string): Body | undefined => {
  switch (value.toUpperCase()) {
    case "7BIT":
      return "7BIT"
    case "8BITMIME":
      return "8BITMIME"
    case "BINARYMIME":
      return "BINARYMIME"
    default:
      return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Per-verb parsers: the arguments are line[i, end), leading and trailing spaces removed.

const parseMail = (line: string, i: number, end: number, limits: Address.Limits): ParseResult => {
  if (!matchesIgnoringCase(line, i, end, "FROM:")) return invalid("Mail", replies.mail)
  i = skipSpaces(line, i + 5, end)
  if (i === end) return invalid("Mail", replies.mail)
  if (line.charCodeAt(i) !== LT) return invalid("Mail", replies.badSender)
  const scanned = Address.scanReversePath(line, i, limits)
  if (scanned._tag === "Failure") return invalid("Mail", replies.badSender)
  i = scanned.end
  if (i < end && line.charCodeAt(i) !== SP) return invalid("Mail", replies.badSender)

  let size: number | undefined
  let body: Body | undefined
  let smtputf8 = false
  let auth = false
  while (i < end) {
    const from = skipSpaces(line, i, end)
    const to = tokenEnd(line, from, end)
    i = to
    const eq = equalsIn(line, from, to)
    const keywordEnd = eq < 0 ? to : eq
    if (!isKeyword(line, from, keywordEnd)) return invalid("Mail", replies.mail)
    const keyword = line.slice(from, keywordEnd).toUpperCase()
    switch (keyword) {
      case "SIZE": {
        if (size !== undefined) return invalid("Mail", replies.duplicate)
        size = eq < 0 ? undefined : sizeValue(line, eq + 1, to)
        if (size === undefined) return invalid("Mail", replies.badSize)
        break
      }
      case "BODY": {
        if (body !== undefined) return invalid("Mail", replies.duplicate)
        body = eq < 0 ? undefined : bodyValue(line.slice(eq + 1, to))
        if (body === undefined) return invalid("Mail", replies.badBody)
        break
      }
      case "SMTPUTF8": {
        if (smtputf8) return invalid("Mail", replies.duplicate)
        if (eq >= 0) return invalid("Mail", replies.badSmtputf8)
        smtputf8 = true
        break
      }
      case "AUTH": {
        // RFC 4954 5: a server that offers AUTH accepts the parameter; Postern does not trust a
        // client's claim about who submitted the message, so it is read and dropped (AUTH=<>).
        if (auth) return invalid("Mail", replies.duplicate)
        if (eq < 0 || eq + 1 >= to) return invalid("Mail", unsupportedOption(keyword))
        auth = true
        break
      }
      default:
        return invalid("Mail", unsupportedOption(keyword))
    }
  }

  const path = scanned.path
  if (path._tag === "Mailbox" && path.international && !smtputf8) return invalid("Mail", replies.smtputf8Required)
  return parsed({ _tag: "Mail", from: path, parameters: { size, body, smtputf8 } })
}

const parseRcpt = (
  line: string,
  i: number,
  end: number,
  context: ParseContext,
  limits: Address.Limits
): ParseResult => {
  if (!matchesIgnoringCase(line, i, end, "TO:")) return invalid("Rcpt", replies.rcpt)
  i = skipSpaces(line, i + 3, end)
  if (i === end) return invalid("Rcpt", replies.rcpt)
  if (line.charCodeAt(i) !== LT) return invalid("Rcpt", replies.badRecipient)
  const scanned = Address.scanForwardPath(line, i, limits)
  if (scanned._tag === "Failure") return invalid("Rcpt", replies.badRecipient)
  i = scanned.end
  if (i < end && line.charCodeAt(i) !== SP) return invalid("Rcpt", replies.badRecipient)

  i = skipSpaces(line, i, end)
  if (i < end) {
    // No RCPT parameter is supported yet (DSN's NOTIFY/ORCPT would go here).
    const tokenTo = tokenEnd(line, i, end)
    const eq = equalsIn(line, i, tokenTo)
    const keywordEnd = eq < 0 ? tokenTo : eq
    if (!isKeyword(line, i, keywordEnd)) return invalid("Rcpt", replies.rcpt)
    return invalid("Rcpt", unsupportedOption(line.slice(i, keywordEnd).toUpperCase()))
  }

  const path = scanned.path
  if (path._tag === "Mailbox" && path.international && !context.smtputf8) {
    return invalid("Rcpt", replies.smtputf8Required)
  }
  return parsed({ _tag: "Rcpt", to: path })
}

/** BDAT chunk sizes are 1 to 15 digits: below 2^53, so exact as a number. */
const maxBdatDigits = 15

const parseBdat = (line: string, i: number, end: number): ParseResult => {
  const digitsEnd = tokenEnd(line, i, end)
  const digits = digitsEnd - i
  if (digits === 0 || digits > maxBdatDigits) return invalid("Bdat", replies.bdat)
  for (let k = i; k < digitsEnd; k++) {
    if (!isDigit(line.charCodeAt(k))) return invalid("Bdat", replies.bdat)
  }
  const size = Number(line.slice(i, digitsEnd))
  const rest = skipSpaces(line, digitsEnd, end)
  if (rest === end) return parsed({ _tag: "Bdat", size, last: false })
  if (end - rest === 4 && matchesIgnoringCase(line, rest, end, "LAST")) return parsed({ _tag: "Bdat", size, last: true })
  return invalid("Bdat", replies.bdat)
}

/** sasl-mech = 1*20(UPPER-ALPHA / DIGIT / "-" / "_") (RFC 4422 3.1), accepted in any case. */
const maxMechanismLength = 20

const parseAuth = (line: string, i: number, end: number): ParseResult => {
  const mechanismEnd = tokenEnd(line, i, end)
  if (mechanismEnd === i || mechanismEnd - i > maxMechanismLength) return invalid("Auth", replies.auth)
  for (let k = i; k < mechanismEnd; k++) {
    const c = line.charCodeAt(k)
    if (!isAlnum(c) && c !== 0x2d && c !== 0x5f) return invalid("Auth", replies.auth)
  }
  const mechanism = line.slice(i, mechanismEnd).toUpperCase()
  const responseStart = skipSpaces(line, mechanismEnd, end)
  if (responseStart === end) return parsed({ _tag: "Auth", mechanism, initialResponse: undefined })
  const responseEnd = tokenEnd(line, responseStart, end)
  if (responseEnd !== end) return invalid("Auth", replies.auth)
  return parsed({ _tag: "Auth", mechanism, initialResponse: line.slice(responseStart, responseEnd) })
}

/**
 * Parses one command line (without CRLF, decoded from UTF-8 with U+FFFD for invalid
 * sequences). The verb is case-insensitive; runs of spaces between the verb and its arguments
 * and at the end of the line are tolerated. `limits` are the address length limits.
 */
export const parse = (line: string, context: ParseContext, limits: Address.Limits = Address.defaultLimits): ParseResult => {
  let end = line.length
  const verbStart = skipSpaces(line, 0, end)
  const verbEnd = tokenEnd(line, verbStart, end)
  const verb = verbEnd - verbStart <= longestVerb && verbEnd > verbStart
    ? verbs.get(line.slice(verbStart, verbEnd).toUpperCase())
    : undefined

  if (hasControl(line)) return verb === undefined ? unknownControl : invalid(verb, replies.controlCharacters)
  if (verb === undefined) return unknown

  while (end > verbEnd && line.charCodeAt(end - 1) === SP) end--
  const i = skipSpaces(line, verbEnd, end)
  const bare = i === end

  switch (verb) {
    case "Ehlo":
      return bare ? invalid(verb, replies.ehlo) : parsed({ _tag: "Ehlo", domain: line.slice(i, end) })
    case "Helo":
      return bare ? invalid(verb, replies.helo) : parsed({ _tag: "Helo", domain: line.slice(i, end) })
    case "Mail":
      return parseMail(line, i, end, limits)
    case "Rcpt":
      return parseRcpt(line, i, end, context, limits)
    case "Data":
      return bare ? data : invalid(verb, replies.data)
    case "Bdat":
      return parseBdat(line, i, end)
    case "Rset":
      return bare ? rset : invalid(verb, replies.rset)
    case "Noop":
      return noop
    case "Quit":
      return bare ? quit : invalid(verb, replies.quit)
    case "Vrfy":
      return bare ? invalid(verb, replies.vrfy) : parsed({ _tag: "Vrfy", argument: line.slice(i, end) })
    case "Expn":
      return bare ? invalid(verb, replies.expn) : parsed({ _tag: "Expn", argument: line.slice(i, end) })
    case "Help":
      return parsed({ _tag: "Help", argument: line.slice(i, end) })
    case "Starttls":
      return bare ? starttls : invalid(verb, replies.starttls)
    case "Auth":
      return parseAuth(line, i, end)
  }
}
