/**
 * The SMTP framer: bytes in, complete protocol units out. Pure and incremental: the result is
 * the same at every split of the input into chunks.
 *
 * The framer is pulled, not pushed: after each command line the session runs the command
 * through the machine, which decides whether the bytes that follow are DATA content, a BDAT
 * chunk or more commands (a pipelined `DATA` may be rejected, and then what follows it is
 * commands again). So `push` only buffers and `next` yields one unit in the current mode.
 */
import { CR, DOT, LF } from "./Bytes.ts"

export interface FramerLimits {
  /** Longest command line, CRLF included (RFC 5321 4.5.3.1.4: 512). */
  readonly maxLineLength: number
  /** How much of an over-long line is discarded before the framer gives up on the connection. */
  readonly maxDiscard: number
}

export type LineFlaw = "bare-lf" | "bare-cr" | "nul"

export type Framed =
  /** A command line without its CRLF. `flaw` marks a bare LF/CR or a NUL byte inside it. */
  | { readonly _tag: "Line"; readonly bytes: Uint8Array; readonly flaw: LineFlaw | undefined }
  /** A line longer than maxLineLength ended (its bytes were discarded). */
  | { readonly _tag: "LineTooLong" }
  /** More than maxDiscard bytes without a line end: the connection should be closed. */
  | { readonly _tag: "LineFlood" }
  /**
   * A TLS handshake record (0x16) where a command line starts: a client speaking TLS to a
   * plaintext port. Binary input follows, so the framer holds nothing more after it.
   */
  | { readonly _tag: "TlsRecord" }
  /**
   * Message content (DATA: dot-unstuffed; BDAT: raw). The bytes may alias the pushed chunk and
   * are only valid until the next `push`.
   */
  | { readonly _tag: "Content"; readonly bytes: Uint8Array }
  /**
   * The end of the DATA content (CRLF.CRLF) or of a BDAT chunk. `size` is the content size
   * of the message so far; `bareLineEnding` tells whether a bare LF or CR was seen anywhere
   * in the content of this message (smuggling attempts and broken clients).
   */
  | {
    readonly _tag: "ContentEnd"
    readonly size: number
    readonly bareLineEnding: "lf" | "cr" | undefined
  }

export type Mode = "command" | "data" | "bdat"

/** The framer of one connection: a small mutable object, fed by the session fiber only. */
export interface Framer {
  /** The mode the next unit is framed in. */
  readonly mode: Mode
  /** Buffers more input. The session drains `next()` before pushing again; if it does not, the rest is copied. */
  push(bytes: Uint8Array): void
  /** One unit in the current mode, or `undefined` when more bytes are needed (or after LineFlood, forever). */
  next(): Framed | undefined
  /** After "354": the bytes that follow are DATA content of a new message (size and bare flag reset). */
  expectData(): void
  /**
   * After a BDAT command: the next `size` bytes are raw content. `first` starts a new message
   * (size and bare flag reset); otherwise the counters continue from the previous chunk.
   */
  expectBdat(size: number, first: boolean): void
  /** Bytes held and not yet framed: must be 0, or dropped with `discard`, at STARTTLS. */
  buffered(): number
  /** Drops everything buffered (pipelined plaintext at STARTTLS); the mode is kept. Returns the bytes dropped. */
  discard(): number
}

const NUL = 0

const EMPTY = new Uint8Array(0)
const TOO_LONG: Framed = { _tag: "LineTooLong" }
const FLOOD: Framed = { _tag: "LineFlood" }
const TLS_RECORD: Framed = { _tag: "TlsRecord" }
/** TLS content type "handshake": the first byte of a ClientHello. Never the start of an SMTP command. */
const TLS_HANDSHAKE = 0x16

// DATA scanner states. A dot at the start of a line is never content (it is either stuffing or
// the terminator), so the only byte ever held back is the CR after such a dot.
/** Inside a line, the previous byte is not a CR. */
const D_MID = 0
/** The previous byte is a CR that is already content; the next byte decides whether it was bare. */
const D_CR = 1
/** At the start of a line (start of content, or after CRLF). */
const D_BOL = 2
/** A dot at the start of a line was dropped. */
const D_DOT = 3
/** A dot at the start of a line, then a CR that is held back until we know whether LF follows. */
const D_DOTCR = 4

/**
 * The first bare line ending in `v` ("lf": LF not after CR; "cr": CR not before LF), where
 * `prevCR` says the byte before `v` in the same message was a CR. A CR at the very end of `v`
 * is not judged: the caller carries it as `prevCR` into the next bytes.
 */
const firstBare = (v: Uint8Array, prevCR: boolean): "lf" | "cr" | undefined => {
  const n = v.length
  let i = 0
  if (prevCR && n > 0) {
    if (v[0] !== LF) return "cr"
    i = 1
  }
  while (i < n) {
    const cr = v.indexOf(CR, i)
    const lf = v.indexOf(LF, i)
    if (lf >= 0 && (cr < 0 || lf < cr)) return "lf"
    if (cr < 0 || cr === n - 1) return undefined
    if (v[cr + 1] !== LF) return "cr"
    i = cr + 2
  }
  return undefined
}

class FramerImpl implements Framer {
  readonly #maxLine: number
  readonly #maxDiscard: number
  #mode: Mode = "command"
  #chunk: Uint8Array = EMPTY
  #pos = 0
  // Command mode: the start of a line split across pushes (always shorter than maxLine).
  #partial: Uint8Array = EMPTY
  #partialLen = 0
  #discarding = false
  #discarded = 0
  #stopped = false
  // Content (DATA and BDAT).
  #dstate = D_BOL
  #size = 0
  #bare: "lf" | "cr" | undefined = undefined
  #remaining = 0
  #bdatCR = false

  constructor(limits: FramerLimits) {
    this.#maxLine = limits.maxLineLength
    this.#maxDiscard = limits.maxDiscard
  }

  get mode(): Mode {
    return this.#mode
  }

  push(bytes: Uint8Array): void {
    // After a flood or a TLS record the session closes; holding more input would only grow memory.
    if (this.#stopped) return
    const rest = this.#chunk.length - this.#pos
    if (rest <= 0) {
      this.#chunk = bytes
      this.#pos = 0
      return
    }
    const joined = new Uint8Array(rest + bytes.length)
    joined.set(this.#chunk.subarray(this.#pos))
    joined.set(bytes, rest)
    this.#chunk = joined
    this.#pos = 0
  }

  next(): Framed | undefined {
    switch (this.#mode) {
      case "command":
        return this.#nextLine()
      case "data":
        return this.#nextData()
      case "bdat":
        return this.#nextBdat()
    }
  }

  expectData(): void {
    this.#unreadPartial()
    this.#mode = "data"
    this.#dstate = D_BOL
    this.#size = 0
    this.#bare = undefined
  }

  expectBdat(size: number, first: boolean): void {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`BDAT chunk size must be a non-negative safe integer, got ${size}`)
    }
    this.#unreadPartial()
    this.#mode = "bdat"
    this.#remaining = size
    if (first) {
      this.#size = 0
      this.#bare = undefined
      this.#bdatCR = false
    }
  }

  buffered(): number {
    const held = this.#mode === "data" ? (this.#dstate === D_DOT ? 1 : this.#dstate === D_DOTCR ? 2 : 0) : 0
    return this.#chunk.length - this.#pos + this.#partialLen + held
  }

  discard(): number {
    const dropped = this.buffered()
    this.#release()
    this.#partialLen = 0
    this.#discarding = false
    this.#discarded = 0
    if (this.#dstate === D_DOT || this.#dstate === D_DOTCR) this.#dstate = D_MID
    return dropped
  }

  #release(): void {
    this.#chunk = EMPTY
    this.#pos = 0
  }

  /**
   * A mode switch while part of a command line is held (the session switched without draining
   * a line end): those bytes belong to what follows, so they go back in front of the input.
   */
  #unreadPartial(): void {
    this.#discarding = false
    this.#discarded = 0
    const held = this.#partialLen
    if (held === 0) return
    const rest = this.#chunk.subarray(this.#pos)
    const joined = new Uint8Array(held + rest.length)
    joined.set(this.#partial.subarray(0, held))
    joined.set(rest, held)
    this.#chunk = joined
    this.#pos = 0
    this.#partialLen = 0
  }

  #flood(): Framed {
    this.#stopped = true
    this.#release()
    this.#partialLen = 0
    return FLOOD
  }

  #nextLine(): Framed | undefined {
    if (this.#stopped) return undefined
    const buf = this.#chunk
    const end = buf.length
    const start = this.#pos
    if (start >= end) {
      this.#release()
      return undefined
    }
    // Any LF ends a line (a bare one with a flaw); the length counts every byte before it,
    // so the verdict is the same whatever the split of the input.
    const lf = buf.indexOf(LF, start)
    if (this.#discarding) {
      if (lf < 0) {
        this.#discarded += end - start
        this.#release()
        return this.#discarded > this.#maxDiscard ? this.#flood() : undefined
      }
      const total = this.#discarded + (lf - start)
      this.#pos = lf + 1
      this.#discarding = false
      this.#discarded = 0
      return total > this.#maxDiscard ? this.#flood() : TOO_LONG
    }
    const held = this.#partialLen
    if (held === 0 && buf[start] === TLS_HANDSHAKE) {
      this.#stopped = true
      this.#release()
      return TLS_RECORD
    }
    if (lf < 0) {
      const n = held + (end - start)
      if (n >= this.#maxLine) {
        // With its line end it would exceed maxLine: stop keeping it.
        this.#partialLen = 0
        this.#discarding = true
        this.#discarded = n
        this.#release()
        return n > this.#maxDiscard ? this.#flood() : undefined
      }
      if (this.#partial.length < this.#maxLine) this.#partial = new Uint8Array(this.#maxLine)
      this.#partial.set(buf.subarray(start, end), held)
      this.#partialLen = n
      this.#release()
      return undefined
    }
    const n = held + (lf - start)
    this.#pos = lf + 1
    if (n >= this.#maxLine) {
      this.#partialLen = 0
      return n > this.#maxDiscard ? this.#flood() : TOO_LONG
    }
    if (held === 0) return lineOf(buf.subarray(start, lf))
    const raw = new Uint8Array(n)
    raw.set(this.#partial.subarray(0, held))
    raw.set(buf.subarray(start, lf), held)
    this.#partialLen = 0
    return lineOf(raw)
  }

  #content(buf: Uint8Array, from: number, to: number): Framed {
    this.#size += to - from
    return { _tag: "Content", bytes: buf.subarray(from, to) }
  }

  #contentEnd(): Framed {
    this.#mode = "command"
    return { _tag: "ContentEnd", size: this.#size, bareLineEnding: this.#bare }
  }

  #nextData(): Framed | undefined {
    const buf = this.#chunk
    const end = buf.length
    let i = this.#pos
    if (i >= end) {
      this.#release()
      return undefined
    }
    let st = this.#dstate
    if (st === D_DOTCR) {
      // The held-back CR came in an earlier push.
      if (buf[i] === LF) {
        this.#pos = i + 1
        return this.#contentEnd()
      }
      this.#dstate = D_CR
      this.#size += 1
      return { _tag: "Content", bytes: Uint8Array.of(CR) }
    }
    let runStart = i
    while (i < end) {
      switch (st) {
        case D_MID: {
          // Only CRLF starts a line, so lines are found by LF; CRs are looked at only until
          // the first bare line ending is known.
          const lf = buf.indexOf(LF, i)
          const stop = lf < 0 ? end : lf
          if (this.#bare === undefined) {
            const cr = buf.indexOf(CR, i)
            if (cr >= 0 && cr < stop - 1) this.#bare = "cr"
          }
          if (lf < 0) {
            st = buf[end - 1] === CR ? D_CR : D_MID
            i = end
          } else {
            if (lf > i && buf[lf - 1] === CR) st = D_BOL
            else this.#bare ??= "lf"
            i = lf + 1
          }
          break
        }
        case D_CR: {
          if (buf[i] === LF) {
            st = D_BOL
            i += 1
          } else {
            this.#bare ??= "cr"
            st = D_MID
          }
          break
        }
        case D_BOL: {
          if (buf[i] !== DOT) {
            st = D_MID
            break
          }
          if (i > runStart) {
            this.#pos = i + 1
            this.#dstate = D_DOT
            return this.#content(buf, runStart, i)
          }
          i += 1
          runStart = i
          st = D_DOT
          break
        }
        case D_DOT: {
          if (buf[i] === CR) {
            st = D_DOTCR
            i += 1
          } else {
            st = D_MID
          }
          break
        }
        default: {
          // D_DOTCR reached in this push: the run is just that CR (runStart === i - 1).
          if (buf[i] === LF) {
            this.#pos = i + 1
            return this.#contentEnd()
          }
          st = D_CR
        }
      }
    }
    this.#dstate = st
    const runEnd = st === D_DOTCR ? end - 1 : end
    if (runEnd > runStart) {
      this.#pos = end
      return this.#content(buf, runStart, runEnd)
    }
    this.#release()
    return undefined
  }

  #nextBdat(): Framed | undefined {
    if (this.#remaining === 0) return this.#contentEnd()
    const buf = this.#chunk
    const start = this.#pos
    const avail = buf.length - start
    if (avail <= 0) {
      this.#release()
      return undefined
    }
    const n = Math.min(this.#remaining, avail)
    const bytes = buf.subarray(start, start + n)
    this.#pos = start + n
    this.#remaining -= n
    this.#size += n
    if (this.#bare === undefined) this.#bare = firstBare(bytes, this.#bdatCR)
    this.#bdatCR = bytes[n - 1] === CR
    return { _tag: "Content", bytes }
  }
}

/** A command line from the bytes before its LF: strips the CR of CRLF and finds the first flaw. */
const lineOf = (raw: Uint8Array): Framed => {
  const last = raw.length - 1
  if (last < 0 || raw[last] !== CR) return { _tag: "Line", bytes: raw, flaw: "bare-lf" }
  const bytes = raw.subarray(0, last)
  let nul = false
  for (let i = 0; i < last; i++) {
    const b = bytes[i]
    if (b === CR) return { _tag: "Line", bytes, flaw: "bare-cr" }
    if (b === NUL) nul = true
  }
  return { _tag: "Line", bytes, flaw: nul ? "nul" : undefined }
}

/** A framer in command mode with the given limits. */
export const make = (limits: FramerLimits): Framer => new FramerImpl(limits)
