/**
 * The session's view of a client connection: pull-based reads, back-pressured writes, close.
 *
 * Postern owns this adapter rather than using `effect/socket` because the STARTTLS upgrade
 * needs the full `node:tls` option set and must report the negotiated facts, and because a
 * pending read must be wakeable by the daemon (shutdown) without racing fibers per read.
 */
import type * as Net from "node:net"
import * as Tls from "node:tls"
import { Effect } from "effect"
import * as ClientHello from "./ClientHello.ts"
import * as HandshakeFailure from "./HandshakeFailure.ts"

/** A read ended by `signal()` rather than by data or end of stream. */
export const Signalled: unique symbol = Symbol.for("postern/tls/Connection/Signalled")
/** A read that found no data within its time limit. */
export const TimedOut: unique symbol = Symbol.for("postern/tls/Connection/TimedOut")
export type ReadResult = Uint8Array | undefined | typeof Signalled

export interface Connection {
  /** The next chunk, `undefined` at end of stream (or error), or `Signalled`. */
  /**
   * The next chunk, `undefined` at end of stream (or error), `Signalled`, or `TimedOut` when
   * nothing came within `millis`. The deadline is checked by the process-wide sweep, armed only
   * when the read has to wait: racing a fiber against a sleep for every read would cost more
   * than the read.
   */
  readonly readWithin: (millis: number) => Effect.Effect<ReadResult | typeof TimedOut>
  /**
   * Writes (text as UTF-8, handed to the socket as is: no Buffer is made for it in JS) and
   * waits while the kernel buffer is full; a dead socket swallows the write.
   */
  readonly write: (data: Uint8Array | string) => Effect.Effect<void>
  /** Flushes what was written, then closes. */
  readonly close: Effect.Effect<void>
  /** Wakes a pending read (or the next one) with `Signalled`. */
  readonly signal: () => void
  readonly isClosed: () => boolean
  /** Drops the chunks received and not yet read (plaintext pipelined after STARTTLS); returns their size. */
  readonly discardPending: () => number
  /**
   * Runs the server side of a TLS handshake over the connection (STARTTLS, or implicit TLS
   * before the greeting); reads and writes go through TLS afterwards. Whatever the connection
   * has received and not handed out yet is the start of the handshake, behind `preRead` (bytes
   * read before, such as those after a PROXY header): for STARTTLS, drop pipelined plaintext
   * with `discardPending` first. Fails when the peer does not complete the handshake within
   * `timeout` ms (the socket is destroyed: Node's own handshake timeout does not close a bare
   * TLSSocket) or the handshake fails.
   */
  readonly startTls: (
    options: Tls.TLSSocketOptions,
    timeout: number,
    preRead?: Uint8Array
  ) => Effect.Effect<Upgraded, HandshakeFailure.HandshakeFailure>
}

/** An established TLS socket, and the server name its ClientHello asked for. */
export interface Upgraded {
  readonly socket: Tls.TLSSocket
  readonly clientHelloName: string | undefined
}

/** A TLS record is at most 16 KiB plus its header: past that, the first one is not coming whole. */
const maxFirstRecord = 16 * 1024 + 5 + 2048

/**
 * Read deadlines of every connection of the process, checked by one sweep every
 * `sweepInterval` ms. SMTP timeouts are minutes long, so a quarter of a second of slack costs
 * nothing, whereas arming and clearing a Node timer for every read of every session cost
 * a tenth of a worker's time under load.
 */
interface Deadline {
  /** Mutable: a connection reuses its read deadline. */
  at: number
  readonly expire: () => void
}

const sweepInterval = 250
const deadlines = new Set<Deadline>()
let sweeper: ReturnType<typeof setInterval> | undefined

const sweep = () => {
  const now = Date.now()
  for (const deadline of deadlines) {
    if (deadline.at > now) continue
    deadlines.delete(deadline)
    deadline.expire()
  }
  if (deadlines.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper)
    sweeper = undefined
  }
}

const watch = (deadline: Deadline): void => {
  deadlines.add(deadline)
  if (sweeper === undefined) {
    sweeper = setInterval(sweep, sweepInterval)
    sweeper.unref()
  }
}

/** Incoming bytes buffered before the socket is paused (the framer drains chunk by chunk). */
const highWaterMark = 256 * 1024

export interface ConnectionOptions {
  /**
   * How long a write may wait for a peer that does not read (a full window), and how long
   * `close` waits for the last bytes to leave, before the socket is destroyed: a client that
   * stops reading must not hold a session, its admission slot or a descriptor for ever.
   */
  readonly writeTimeout: number
}

export const fromSocket = (raw: Net.Socket, options: ConnectionOptions): Connection => {
  /** The plain socket, or the TLS socket over it after `startTls`. */
  let socket: Net.Socket = raw
  const chunks: Array<Uint8Array> = []
  let buffered = 0
  let ended = false
  let signalled = false
  let waiter: ((result: ReadResult) => void) | undefined

  const wake = (result: ReadResult): boolean => {
    const w = waiter
    if (w === undefined) return false
    waiter = undefined
    w(result)
    return true
  }

  const onData = (chunk: Uint8Array) => {
    if (wake(chunk)) return
    chunks.push(chunk)
    buffered += chunk.length
    if (buffered > highWaterMark) socket.pause()
  }
  const finish = () => {
    ended = true
    wake(undefined)
  }
  const attach = (target: Net.Socket) => {
    target.on("data", onData)
    target.on("end", finish)
    target.on("close", finish)
    // An error is followed by "close"; the listener keeps the process alive.
    target.on("error", finish)
  }
  const detach = (target: Net.Socket) => {
    target.off("data", onData)
    target.off("end", finish)
    target.off("close", finish)
    target.off("error", finish)
  }
  attach(raw)

  const ready = (): ReadResult | "wait" => {
    if (signalled) {
      signalled = false
      return Signalled
    }
    const chunk = chunks.shift()
    if (chunk !== undefined) {
      buffered -= chunk.length
      if (socket.isPaused() && buffered <= highWaterMark / 2) socket.resume()
      return chunk
    }
    return ended ? undefined : "wait"
  }

  // One read waits at a time, so its deadline and callbacks are made once per connection
  // rather than per read: a session waits for every command it reads.
  let resumeRead: ((effect: Effect.Effect<ReadResult | typeof TimedOut>) => void) | undefined
  const readDeadline: Deadline = {
    at: 0,
    expire: () => {
      waiter = undefined
      const resume = resumeRead
      resumeRead = undefined
      resume?.(Effect.succeed(TimedOut))
    }
  }
  const onReadable = (result: ReadResult) => {
    deadlines.delete(readDeadline)
    const resume = resumeRead
    resumeRead = undefined
    resume?.(Effect.succeed(result))
  }
  const cancelRead = Effect.sync(() => {
    deadlines.delete(readDeadline)
    waiter = undefined
    resumeRead = undefined
  })
  const waitForRead = (resume: (effect: Effect.Effect<ReadResult | typeof TimedOut>) => void) => {
    resumeRead = resume
    watch(readDeadline)
    waiter = onReadable
    return cancelRead
  }

  const readWithin = (millis: number): Effect.Effect<ReadResult | typeof TimedOut> =>
    Effect.suspend(() => {
      const now = ready()
      if (now !== "wait") return Effect.succeed(now)
      readDeadline.at = Date.now() + millis
      return Effect.callback<ReadResult | typeof TimedOut>(waitForRead)
    })

  const write = (data: Uint8Array | string): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (socket.destroyed || !socket.writable) return Effect.void
      if (socket.write(data)) return Effect.void
      return Effect.callback<void>((resume) => {
        const deadline: Deadline = {
          at: Date.now() + options.writeTimeout,
          expire: () => {
            socket.destroy()
            done()
          }
        }
        const done = () => {
          deadlines.delete(deadline)
          socket.off("drain", done)
          socket.off("close", done)
          resume(Effect.void)
        }
        watch(deadline)
        socket.on("drain", done)
        socket.on("close", done)
        return Effect.sync(() => {
          deadlines.delete(deadline)
          socket.off("drain", done)
          socket.off("close", done)
        })
      })
    })

  const close = Effect.sync(() => {
    ended = true
    if (socket.destroyed) return
    socket.destroySoon()
    const deadline: Deadline = { at: Date.now() + options.writeTimeout, expire: () => socket.destroy() }
    watch(deadline)
    socket.once("close", () => deadlines.delete(deadline))
  })

  const discardPending = (): number => {
    const dropped = buffered
    chunks.length = 0
    buffered = 0
    return dropped
  }

  const startTls = (
    tlsOptions: Tls.TLSSocketOptions,
    timeout: number,
    preRead?: Uint8Array
  ): Effect.Effect<Upgraded, HandshakeFailure.HandshakeFailure> =>
    Effect.callback<Upgraded, HandshakeFailure.HandshakeFailure>((resume) => {
      if (ended || raw.destroyed) {
        resume(Effect.fail(HandshakeFailure.peerClosed))
        return
      }
      // From here the bytes on the wire belong to TLS: plaintext the peer sent after STARTTLS
      // and before its ClientHello reaches OpenSSL as a bad record and fails the handshake.
      detach(raw)
      raw.on("error", ignore)
      // Bytes already received (an implicit TLS client's ClientHello may arrive before the
      // session starts) are the start of the handshake.
      let received = Buffer.concat([...(preRead === undefined ? [] : [preRead]), ...chunks.splice(0)])
      buffered = 0
      let secure: Tls.TLSSocket | undefined
      let settled = false
      let clientHelloName: string | undefined
      let sawClientHello = false
      const settle = (outcome: Effect.Effect<Upgraded, HandshakeFailure.HandshakeFailure>) => {
        if (settled) return
        settled = true
        deadlines.delete(deadline)
        raw.off("data", collect)
        raw.off("close", onClose)
        secure?.off("secure", onSecure)
        secure?.off("error", onError)
        secure?.off("_tlsError", onError)
        secure?.off("close", onClose)
        resume(outcome)
      }
      const fail = (failure: HandshakeFailure.HandshakeFailure) => {
        ended = true
        secure?.on("error", ignore)
        ;(secure ?? raw).destroy()
        settle(Effect.fail(sawClientHello ? { ...failure, clientHello: { serverName: clientHelloName } } : failure))
      }
      const onSecure = () => {
        if (secure === undefined) return
        socket = secure
        attach(secure)
        settle(Effect.succeed({ socket: secure, clientHelloName }))
      }
      const onError = (error: unknown) => fail(HandshakeFailure.classify(error))
      const onClose = () => fail(HandshakeFailure.peerClosed)
      // The ClientHello's first record is read here and handed back, so that its server name
      // is known even when Node reports none (a resumed TLS 1.2 session).
      const handOver = () => {
        raw.off("data", collect)
        raw.off("close", onClose)
        raw.pause()
        if (received.length > 0) raw.unshift(received)
        const upgraded = new Tls.TLSSocket(raw, { ...tlsOptions, isServer: true })
        secure = upgraded
        upgraded.once("secure", onSecure)
        upgraded.on("error", onError)
        upgraded.on("_tlsError", onError)
        upgraded.once("close", onClose)
      }
      const inspect = () => {
        const hello = ClientHello.peek(received)
        if (hello._tag === "NeedMore" && received.length < maxFirstRecord) return
        if (hello._tag === "ClientHello") {
          sawClientHello = true
          clientHelloName = hello.serverName
        }
        handOver()
      }
      const collect = (chunk: Uint8Array) => {
        received = Buffer.concat([received, chunk])
        inspect()
      }
      const deadline: Deadline = { at: Date.now() + timeout, expire: () => fail(HandshakeFailure.timedOut(timeout)) }
      watch(deadline)
      raw.on("data", collect)
      raw.once("close", onClose)
      inspect()
      return Effect.sync(() => {
        if (!settled) fail(HandshakeFailure.timedOut(timeout))
      })
    })

  return {
    readWithin,
    write,
    close,
    discardPending,
    startTls,
    signal: () => {
      if (!wake(Signalled)) signalled = true
    },
    isClosed: () => ended || socket.destroyed
  }
}

const ignore = () => {}
