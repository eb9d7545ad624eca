/**
 * Envelope addresses as the command parser produces them (RFC 5321 4.1.2, RFC 6531), and the
 * path scanner that reads them out of a MAIL or RCPT line.
 *
 * The scanner works on char codes and indices of the line: it allocates only the strings of the
 * result (and one concatenation per quoted-pair), and every loop advances at least one character,
 * so its cost is linear in the length of the path whatever the input.
 */
import { COLON, DOT, LT, SP } from "./Bytes.ts"

/** `local@domain`, as read from a path (RFC 5321 Mailbox). */
export interface Mailbox {
  readonly _tag: "Mailbox"
  /** The local part as the client wrote it, with quoting removed (quoted-pairs unescaped). */
  readonly local: string
  /** The domain in lower case; an address literal keeps its brackets, e.g. "[192.0.2.1]". */
  readonly domain: string
  /** True when local or domain holds non-ASCII characters (needs SMTPUTF8). */
  readonly international: boolean
}

/** `RCPT TO:<Postmaster>` with no domain (RFC 5321 4.1.1.3). */
export interface Postmaster {
  readonly _tag: "Postmaster"
}

/** `MAIL FROM:<>`: the null reverse-path of bounces. */
export interface NullPath {
  readonly _tag: "NullPath"
}

/** What `MAIL FROM:` carries. */
export type ReversePath = Mailbox | NullPath
/** What `RCPT TO:` carries. */
export type ForwardPath = Mailbox | Postmaster

const hasNonAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return true
  }
  return false
}

/** A mailbox from its parts; the domain is lower-cased. */
export const mailbox = (local: string, domain: string): Mailbox => ({
  _tag: "Mailbox",
  local,
  domain: domain.toLowerCase(),
  international: hasNonAscii(local) || hasNonAscii(domain)
})

/** The Postmaster forward-path. */
export const postmaster: Postmaster = { _tag: "Postmaster" }
/** The null reverse-path `<>`. */
export const nullPath: NullPath = { _tag: "NullPath" }

/** The domain a path is addressed to, or undefined for `<>` and `<Postmaster>` (which mean this host). */
export const domainOf = (path: ReversePath | ForwardPath): string | undefined =>
  path._tag === "Mailbox" ? path.domain : undefined

/** True when the domain is an address literal (`[192.0.2.1]`, `[IPv6:...]`, `[tag:...]`). */
export const isAddressLiteral = (domain: string): boolean => domain.charCodeAt(0) === BRACKET_OPEN

// ---------------------------------------------------------------------------------------------
// Character classes

const DQUOTE = 0x22
const HYPHEN = 0x2d
const COMMA = 0x2c
const GT = 0x3e
const AT = 0x40
const BRACKET_OPEN = 0x5b
const BACKSLASH = 0x5c
const BRACKET_CLOSE = 0x5d

/** RFC 5322 atext, ASCII part (RFC 6531 adds UTF8-non-ascii, handled by `nonAscii`). */
const ATEXT = new Uint8Array(128)
for (let c = 0x30; c <= 0x39; c++) ATEXT[c] = 1
for (let c = 0x41; c <= 0x5a; c++) ATEXT[c] = 1
for (let c = 0x61; c <= 0x7a; c++) ATEXT[c] = 1
for (const ch of "!#$%&'*+-/=?^_`{|}~") ATEXT[ch.charCodeAt(0)] = 1

const isAtext = (c: number): boolean => c < 128 && ATEXT[c] === 1

const isLetDig = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)

const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66)

// Negative results of the internal scanners; a non-negative result is an index or a width.
const SYNTAX = -1
const BAD_UTF8 = -2

/**
 * The width (1 or 2 UTF-16 units) of the non-ASCII character at `i` if it may appear in an
 * internationalized address, else SYNTAX or BAD_UTF8. The session decodes invalid UTF-8 to
 * U+FFFD, so U+FFFD (and a lone surrogate, which no decoder produces) means invalid UTF-8.
 */
const nonAscii = (text: string, i: number): number => {
  const c = text.charCodeAt(i)
  if (c === 0xfffd) return BAD_UTF8
  if (c >= 0xd800 && c <= 0xdbff) {
    const d = text.charCodeAt(i + 1)
    return d >= 0xdc00 && d <= 0xdfff ? 2 : BAD_UTF8
  }
  if (c >= 0xdc00 && c <= 0xdfff) return BAD_UTF8
  // C1 controls are valid UTF-8 but control characters all the same.
  if (c <= 0x9f) return SYNTAX
  return 1
}

/** Octets of text[from, to) once encoded as UTF-8 (surrogate pairs count 2 + 2). */
const utf8Length = (text: string, from: number, to: number): number => {
  let octets = to - from
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0x80) octets += c < 0x800 ? 1 : c >= 0xd800 && c <= 0xdfff ? 1 : 2
  }
  return octets
}

// ---------------------------------------------------------------------------------------------
// Domains and address literals

/**
 * Scans `sub-domain *("." sub-domain)` from `i` (RFC 5321 4.1.2), with U-labels when `utf8`
 * (RFC 6531 3.3). Returns the index after the domain, or SYNTAX / BAD_UTF8.
 */
const scanDomain = (text: string, i: number, utf8: boolean): number => {
  for (;;) {
    const labelStart = i
    let last = -1
    let ascii = true
    for (;;) {
      const c = text.charCodeAt(i)
      if (isLetDig(c) || c === HYPHEN) {
        last = c
        i++
      } else if (c >= 0x80 && utf8) {
        const width = nonAscii(text, i)
        if (width < 0) return width
        last = c
        ascii = false
        i += width
      } else {
        break
      }
    }
    if (i === labelStart || text.charCodeAt(labelStart) === HYPHEN || last === HYPHEN) return SYNTAX
    // A DNS label is at most 63 octets (RFC 1035 2.3.4); a U-label is judged by its A-label later.
    if (ascii && i - labelStart > 63) return SYNTAX
    if (text.charCodeAt(i) !== DOT) return i
    i++
  }
}

/** `Snum 3("." Snum)` exactly filling s[from, to), each Snum 1-3 digits of value 0-255. */
const isIpv4 = (s: string, from: number, to: number): boolean => {
  let i = from
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (s.charCodeAt(i) !== DOT) return false
      i++
    }
    const start = i
    let value = 0
    while (i < to && i - start < 3) {
      const c = s.charCodeAt(i)
      if (c < 0x30 || c > 0x39) break
      value = value * 10 + (c - 0x30)
      i++
    }
    if (i === start || value > 255) return false
  }
  return i === to
}

/** The number of `IPv6-hex` groups in a ":"-separated list, 0 for "", or -1 when malformed. */
const hexGroups = (s: string): number => {
  if (s.length === 0) return 0
  let groups = 1
  let run = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === COLON) {
      if (run === 0) return -1
      groups++
      run = 0
    } else if (isHex(c) && run < 4) {
      run++
    } else {
      return -1
    }
  }
  return run === 0 ? -1 : groups
}

/** RFC 5321 IPv6-addr: IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp. */
const isIpv6 = (s: string): boolean => {
  let hex = s
  let full = 8
  let compressed = 6
  if (s.includes(".")) {
    const lastColon = s.lastIndexOf(":")
    if (lastColon < 0 || !isIpv4(s, lastColon + 1, s.length)) return false
    // Keep a "::" that directly precedes the IPv4 part; drop a single separating ":".
    hex = s.endsWith("::", lastColon + 1) ? s.slice(0, lastColon + 1) : s.slice(0, lastColon)
    full = 6
    compressed = 4
  }
  const gap = hex.indexOf("::")
  if (gap < 0) return hexGroups(hex) === full
  if (hex.indexOf("::", gap + 1) >= 0) return false
  const left = hexGroups(hex.slice(0, gap))
  const right = hexGroups(hex.slice(gap + 2))
  return left >= 0 && right >= 0 && left + right <= compressed
}

/** The content between the brackets of an address literal (RFC 5321 4.1.3). */
const isLiteralContent = (s: string): boolean => {
  const colon = s.indexOf(":")
  if (colon < 0) return isIpv4(s, 0, s.length)
  if (colon === 4 && s.slice(0, 4).toLowerCase() === "ipv6") return isIpv6(s.slice(5))
  // General-address-literal: Standardized-tag (Ldh-str) ":" 1*dcontent.
  for (let i = 0; i < colon; i++) {
    const c = s.charCodeAt(i)
    if (!isLetDig(c) && c !== HYPHEN) return false
  }
  if (colon === 0 || !isLetDig(s.charCodeAt(colon - 1)) || colon === s.length - 1) return false
  for (let i = colon + 1; i < s.length; i++) {
    const c = s.charCodeAt(i)
    // dcontent = %d33-90 / %d94-126
    if (c < 33 || c > 126 || c === BRACKET_OPEN || c === BACKSLASH || c === BRACKET_CLOSE) return false
  }
  return true
}

/** Scans an address literal starting at its "[". Returns the index after "]" or SYNTAX. */
const scanAddressLiteral = (text: string, i: number): number => {
  const close = text.indexOf("]", i + 1)
  if (close < 0 || !isLiteralContent(text.slice(i + 1, close))) return SYNTAX
  return close + 1
}

// ---------------------------------------------------------------------------------------------
// Paths

/** Length limits of RFC 5321 4.5.3.1, in UTF-8 octets as written on the wire. */
export interface Limits {
  /** Local part, quotes and escapes included (4.5.3.1.1: 64). */
  readonly localPart: number
  /** Domain, brackets of an address literal included (4.5.3.1.2: 255). */
  readonly domain: number
  /** The whole path, angle brackets and source route included (4.5.3.1.3: 256). */
  readonly path: number
}

/** The RFC 5321 limits. */
export const defaultLimits: Limits = { localPart: 64, domain: 255, path: 256 }

/** Why a path was refused. All reasons get the same reply; the reason is for the log. */
export type PathFailure =
  /** Not a path by the grammar (missing brackets, bad local part, bad domain, ...). */
  | "Syntax"
  /** `<>` where a forward-path is required. */
  | "EmptyPath"
  | "LocalPartTooLong"
  | "DomainTooLong"
  | "PathTooLong"
  /** U+FFFD (what the session decodes invalid UTF-8 to) or a lone surrogate in the path. */
  | "InvalidUtf8"

/** A path read from a line: the path and the index just after its ">", or why it failed. */
export type Scanned<P> =
  | { readonly _tag: "Path"; readonly path: P; readonly end: number }
  | { readonly _tag: "Failure"; readonly reason: PathFailure }

const failures: { readonly [R in PathFailure]: Scanned<never> } = {
  Syntax: { _tag: "Failure", reason: "Syntax" },
  EmptyPath: { _tag: "Failure", reason: "EmptyPath" },
  LocalPartTooLong: { _tag: "Failure", reason: "LocalPartTooLong" },
  DomainTooLong: { _tag: "Failure", reason: "DomainTooLong" },
  PathTooLong: { _tag: "Failure", reason: "PathTooLong" },
  InvalidUtf8: { _tag: "Failure", reason: "InvalidUtf8" }
}

const failed = (code: number): Scanned<never> => code === BAD_UTF8 ? failures.InvalidUtf8 : failures.Syntax

/**
 * Scans `"<" [A-d-l ":"] Mailbox ">"` with text[start] === "<". A source route (A-d-l) is
 * checked and ignored (RFC 5321 C, 4.1.2).
 */
const scanMailboxPath = (text: string, start: number, limits: Limits): Scanned<Mailbox> => {
  let i = start + 1
  if (text.charCodeAt(i) === AT) {
    for (;;) {
      if (text.charCodeAt(i) !== AT) return failures.Syntax
      const e = scanDomain(text, i + 1, false)
      if (e < 0) return failed(e)
      const c = text.charCodeAt(e)
      i = e + 1
      if (c === COLON) break
      if (c !== COMMA) return failures.Syntax
    }
  }

  const localStart = i
  let local: string
  if (text.charCodeAt(i) === DQUOTE) {
    // Quoted-string: segments between quoted-pairs are sliced, not copied char by char.
    i++
    let unescaped = ""
    let segment = i
    for (;;) {
      const c = text.charCodeAt(i)
      if (c === DQUOTE) break
      if (c === BACKSLASH) {
        const d = text.charCodeAt(i + 1)
        if (!(d >= SP && d <= 126)) return d >= 0x80 ? failed(nonAscii(text, i + 1)) : failures.Syntax
        unescaped += text.slice(segment, i)
        segment = i + 1
        i += 2
      } else if (c >= SP && c <= 126) {
        i++
      } else if (c >= 0x80) {
        const width = nonAscii(text, i)
        if (width < 0) return failed(width)
        i += width
      } else {
        // A control character or the end of the line: the quote is not closed.
        return failures.Syntax
      }
    }
    local = unescaped + text.slice(segment, i)
    i++
  } else {
    // Dot-string: atoms separated by single dots, no dot first or last.
    let atomStart = i
    for (;;) {
      const c = text.charCodeAt(i)
      if (isAtext(c)) {
        i++
      } else if (c === DOT) {
        if (i === atomStart) return failures.Syntax
        i++
        atomStart = i
      } else if (c >= 0x80) {
        const width = nonAscii(text, i)
        if (width < 0) return failed(width)
        i += width
      } else {
        break
      }
    }
    if (i === atomStart) return failures.Syntax
    local = text.slice(localStart, i)
  }
  const localEnd = i

  if (text.charCodeAt(i) !== AT) return failures.Syntax
  const domainStart = i + 1
  const domainEnd = text.charCodeAt(domainStart) === BRACKET_OPEN
    ? scanAddressLiteral(text, domainStart)
    : scanDomain(text, domainStart, true)
  if (domainEnd < 0) return failed(domainEnd)
  if (text.charCodeAt(domainEnd) !== GT) return failures.Syntax
  const end = domainEnd + 1

  const localOctets = utf8Length(text, localStart, localEnd)
  const domainOctets = utf8Length(text, domainStart, domainEnd)
  if (localOctets > limits.localPart) return failures.LocalPartTooLong
  if (domainOctets > limits.domain) return failures.DomainTooLong
  if (utf8Length(text, start, end) > limits.path) return failures.PathTooLong
  return {
    _tag: "Path",
    path: {
      _tag: "Mailbox",
      local,
      domain: text.slice(domainStart, domainEnd).toLowerCase(),
      international: localOctets !== localEnd - localStart || domainOctets !== domainEnd - domainStart
    },
    end
  }
}

const POSTMASTER = "postmaster"

/** True when text[i..] is "Postmaster>" in any case. */
const isPostmaster = (text: string, i: number): boolean => {
  for (let k = 0; k < POSTMASTER.length; k++) {
    // | 0x20 folds only A-Z onto a-z among the codes that can equal a lowercase letter.
    if ((text.charCodeAt(i + k) | 0x20) !== POSTMASTER.charCodeAt(k)) return false
  }
  return text.charCodeAt(i + POSTMASTER.length) === GT
}

/**
 * Reads the reverse-path of `MAIL FROM:` starting at text[start], which must be "<".
 * `<>` is the null path. Non-ASCII addresses are accepted and flagged `international`:
 * whether SMTPUTF8 allows them is the caller's judgement.
 */
export const scanReversePath = (text: string, start: number, limits: Limits = defaultLimits): Scanned<ReversePath> => {
  if (text.charCodeAt(start) !== LT) return failures.Syntax
  if (text.charCodeAt(start + 1) === GT) return { _tag: "Path", path: nullPath, end: start + 2 }
  return scanMailboxPath(text, start, limits)
}

/**
 * Reads the forward-path of `RCPT TO:` starting at text[start], which must be "<".
 * `<Postmaster>` in any case is the Postmaster path; `<>` is refused.
 */
export const scanForwardPath = (text: string, start: number, limits: Limits = defaultLimits): Scanned<ForwardPath> => {
  if (text.charCodeAt(start) !== LT) return failures.Syntax
  if (text.charCodeAt(start + 1) === GT) return failures.EmptyPath
  if (isPostmaster(text, start + 1)) return { _tag: "Path", path: postmaster, end: start + 2 + POSTMASTER.length }
  return scanMailboxPath(text, start, limits)
}

const whole = <P>(text: string, scanned: Scanned<P>): Scanned<P> =>
  scanned._tag === "Path" && scanned.end !== text.length ? failures.Syntax : scanned

/** Parses a whole string, angle brackets included, as a reverse-path. */
export const parseReversePath = (text: string, limits: Limits = defaultLimits): Scanned<ReversePath> =>
  whole(text, scanReversePath(text, 0, limits))

/** Parses a whole string, angle brackets included, as a forward-path. */
export const parseForwardPath = (text: string, limits: Limits = defaultLimits): Scanned<ForwardPath> =>
  whole(text, scanForwardPath(text, 0, limits))

// ---------------------------------------------------------------------------------------------
// Formatting

/** True when the local part is not a Dot-string by the scanner's own rules. */
const needsQuoting = (local: string): boolean => {
  if (local.length === 0) return true
  let atomStart = 0
  for (let i = 0; i < local.length;) {
    const c = local.charCodeAt(i)
    if (isAtext(c)) {
      i++
    } else if (c === DOT) {
      if (i === atomStart) return true
      i++
      atomStart = i
    } else if (c >= 0x80) {
      const width = nonAscii(local, i)
      if (width < 0) return true
      i += width
    } else {
      return true
    }
  }
  return atomStart === local.length
}

/** The address in RFC 5321 form without angle brackets, re-quoting the local part where needed. */
export const format = (path: ReversePath | ForwardPath): string => {
  switch (path._tag) {
    case "NullPath":
      return ""
    case "Postmaster":
      return "Postmaster"
    case "Mailbox": {
      const local = needsQuoting(path.local) ? `"${path.local.replace(/(["\\])/g, "\\$1")}"` : path.local
      return `${local}@${path.domain}`
    }
  }
}
