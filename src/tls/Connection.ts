/**
 * The session's view of a client connection: pull-based reads, back-pressured writes, close.
 *
 * Postern owns this adapter rather than using `effect/socket` because the STARTTLS upgrade
 * needs the full `node:tls` option set and must report the negotiated facts, and because a
 * pending read must be wakeable by the daemon (shutdown) without racing fibers per read.
 */
import type * as Net from "node:net"
import { Effect } from "effect"

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
  /** Writes and waits while the kernel buffer is full; a dead socket swallows the write. */
  readonly write: (bytes: Uint8Array) => Effect.Effect<void>
  /** Flushes what was written, then closes. */
  readonly close: Effect.Effect<void>
  /** Wakes a pending read (or the next one) with `Signalled`. */
  readonly signal: () => void
  readonly isClosed: () => boolean
}

/**
 * Read deadlines of every connection of the process, checked by one sweep every
 * `sweepInterval` ms. SMTP timeouts are minutes long, so a quarter of a second of slack costs
 * nothing, whereas arming and clearing a Node timer for every read of every session cost
 * a tenth of a worker's time under load.
 */
interface Deadline {
  readonly at: number
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

export const fromSocket = (socket: Net.Socket, options: ConnectionOptions): Connection => {
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

  socket.on("data", (chunk: Uint8Array) => {
    if (wake(chunk)) return
    chunks.push(chunk)
    buffered += chunk.length
    if (buffered > highWaterMark) socket.pause()
  })
  const finish = () => {
    ended = true
    wake(undefined)
  }
  socket.on("end", finish)
  socket.on("close", finish)
  // An error is followed by "close"; the listener keeps the process alive.
  socket.on("error", finish)

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

  const readWithin = (millis: number): Effect.Effect<ReadResult | typeof TimedOut> =>
    Effect.suspend(() => {
      const now = ready()
      if (now !== "wait") return Effect.succeed(now)
      return Effect.callback<ReadResult | typeof TimedOut>((resume) => {
        const deadline: Deadline = {
          at: Date.now() + millis,
          expire: () => {
            waiter = undefined
            resume(Effect.succeed(TimedOut))
          }
        }
        watch(deadline)
        waiter = (result) => {
          deadlines.delete(deadline)
          resume(Effect.succeed(result))
        }
        return Effect.sync(() => {
          deadlines.delete(deadline)
          waiter = undefined
        })
      })
    })

  const write = (bytes: Uint8Array): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (socket.destroyed || !socket.writable) return Effect.void
      if (socket.write(bytes)) return Effect.void
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

  return {
    readWithin,
    write,
    close,
    signal: () => {
      if (!wake(Signalled)) signalled = true
    },
    isClosed: () => ended || socket.destroyed
  }
}
