/**
 * One benchmark connection: connect, 220, EHLO, (STARTTLS, 220, TLS handshake, EHLO), then
 * MAIL/RCPT/DATA/message for each message, QUIT. Plain callbacks over raw `node:net` and
 * `node:tls` sockets, no Effect and no promises: it runs thousands of times per second in a
 * worker thread and must cost the load generator as little as possible.
 *
 * The connection reports what it measured to an {@link Observer} and ends with exactly one
 * call of `finished`.
 */
import * as Net from "node:net"
import * as Tls from "node:tls"
import type { LoadOptions } from "./LoadOptions.ts"
import * as ReplyReader from "./ReplyReader.ts"

/** What every connection of a worker shares: the options and what was prepared from them. */
export interface Shared {
  readonly options: LoadOptions
  /** Built once per worker: creating a context per connection would cost more than a handshake. */
  readonly secureContext: Tls.SecureContext | undefined
  /** The dot-stuffed message with its final `.` line. */
  readonly data: Uint8Array
  /** Whether stopping was asked: no new message is started, the connection QUITs. */
  readonly stopping: () => boolean
}

/** Where a connection reports. Times are in microseconds. */
export interface Observer {
  /** The TLS handshake completed, from the ClientHello to `secureConnect`, on `socket`. */
  readonly handshake: (resumed: boolean, micros: number, socket: Tls.TLSSocket) => void
  /** A message was accepted, from MAIL to the 250 after the dot. */
  readonly message: (micros: number) => void
  /** The server gave a session (ticket) that a later connection may resume. */
  readonly session: (session: Buffer) => void
  /** The connection ended: `undefined` after a clean QUIT, else the kind of failure and a detail. */
  readonly finished: (error: { readonly kind: string; readonly detail: string } | undefined) => void
}

// The steps, as small integers: the reply handler switches on them for every reply.
const Greeting = 0
const Ehlo = 1
const StartTls = 2
const Mail = 3
const Rcpt = 4
const Data = 5
const Dot = 6
const Quit = 7
const Handshake = 8
const Connecting = 9

const stepNames = ["greeting", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "end-of-data", "QUIT", "handshake", "connect"]

const now = (): number => performance.now()

const micros = (since: number): number => (now() - since) * 1000

/** The reply's last line, shortened, for error details. */
const describe = (reply: ReplyReader.Reply): string => {
  const last = reply.lines[reply.lines.length - 1] ?? ""
  return `${reply.code} ${last.length > 120 ? `${last.slice(0, 120)}...` : last}`
}

const advertisesStartTls = (reply: ReplyReader.Reply): boolean => {
  for (let i = 1; i < reply.lines.length; i++) {
    const line = reply.lines[i]
    if (line !== undefined && /^STARTTLS\b/i.test(line)) return true
  }
  return false
}

const socketErrorKind = (step: number, error: NodeJS.ErrnoException): string => {
  if (step === Connecting) return error.code === "ECONNREFUSED" ? "connect refused" : `connect ${error.code ?? "error"}`
  if (step === Handshake) return "tls-handshake"
  return error.code === "ECONNRESET" || error.code === "EPIPE" ? "reset" : "socket error"
}

/**
 * Runs one connection. `session` is offered for resumption (with `--resume`). Never throws:
 * every failure ends in `observer.finished` with its kind.
 */
export const run = (shared: Shared, session: Buffer | undefined, observer: Observer): void => {
  const options = shared.options
  const plain = Net.connect({ host: options.host, port: options.port })
  plain.setNoDelay(true)
  plain.setTimeout(options.timeoutMs)
  let socket: Net.Socket = plain
  let tls: Tls.TLSSocket | undefined
  let reader = ReplyReader.make()
  let step = Connecting
  let sent = 0
  let started = 0
  let done = false

  const finish = (error: { readonly kind: string; readonly detail: string } | undefined) => {
    if (done) return
    done = true
    if (error === undefined) socket.end()
    else {
      socket.destroy()
      if (socket !== plain) plain.destroy()
    }
    observer.finished(error)
  }

  const fail = (kind: string, detail: string) => finish({ kind, detail })

  const replyError = (reply: ReplyReader.Reply) =>
    fail(`${Math.floor(reply.code / 100)}xx ${stepNames[step] ?? "reply"}`, describe(reply))

  const nextMessage = () => {
    if (sent < options.messagesPerConnection && !shared.stopping()) {
      step = Mail
      started = now()
      socket.write(`MAIL FROM:<${options.from}>\r\n`)
    } else {
      step = Quit
      socket.write("QUIT\r\n")
    }
  }

  const afterEhlo = (reply: ReplyReader.Reply) => {
    if (options.tls === "starttls" && tls === undefined) {
      if (!advertisesStartTls(reply)) return fail("no STARTTLS", "EHLO reply does not advertise STARTTLS")
      step = StartTls
      socket.write("STARTTLS\r\n")
      return
    }
    nextMessage()
  }

  const onReply = (reply: ReplyReader.Reply) => {
    const code = reply.code
    switch (step) {
      case Greeting:
        if (code !== 220) return replyError(reply)
        step = Ehlo
        socket.write(`EHLO ${options.ehlo}\r\n`)
        return
      case Ehlo:
        if (code !== 250) return replyError(reply)
        return afterEhlo(reply)
      case StartTls:
        if (code !== 220) return replyError(reply)
        if (reader.pending() > 0) return fail("protocol", "data after the STARTTLS reply, before the handshake")
        return upgrade()
      case Mail:
        if (code !== 250) return replyError(reply)
        step = Rcpt
        socket.write(`RCPT TO:<${options.to}>\r\n`)
        return
      case Rcpt:
        if (code !== 250 && code !== 251) return replyError(reply)
        step = Data
        socket.write("DATA\r\n")
        return
      case Data:
        if (code !== 354) return replyError(reply)
        step = Dot
        socket.write(shared.data)
        return
      case Dot:
        if (code !== 250) return replyError(reply)
        sent += 1
        observer.message(micros(started))
        return nextMessage()
      case Quit:
        if (code !== 221) return replyError(reply)
        return finish(undefined)
      default:
        return fail("protocol", `unexpected reply during ${stepNames[step] ?? "?"}: ${describe(reply)}`)
    }
  }

  const onData = (chunk: Buffer) => {
    if (done) return
    let replies: Array<ReplyReader.Reply>
    try {
      replies = reader.feed(chunk)
    } catch (error) {
      return fail("protocol", error instanceof ReplyReader.MalformedReply ? error.message : String(error))
    }
    for (const reply of replies) {
      if (done) return
      onReply(reply)
    }
  }

  const onError = (error: NodeJS.ErrnoException) => {
    if (done) return
    fail(socketErrorKind(step, error), `${stepNames[step] ?? "?"}: ${error.message.trim()}`)
  }

  const onClose = () => {
    if (done) return
    // A server may close right after (or instead of) its 221: the QUIT was sent, that is enough.
    if (step === Quit) return finish(undefined)
    fail("closed", `closed by the server during ${stepNames[step] ?? "?"}`)
  }

  const onTimeout = () => {
    // A connection that ended well but whose server never closed: drop it now.
    if (done) return void socket.destroy()
    fail("timeout", `no progress for ${options.timeoutMs} ms during ${stepNames[step] ?? "?"}`)
  }

  const upgrade = () => {
    plain.removeListener("data", onData)
    plain.removeListener("close", onClose)
    plain.removeListener("timeout", onTimeout)
    plain.setTimeout(0)
    step = Handshake
    started = now()
    const secured = Tls.connect({
      socket: plain,
      ...(shared.secureContext === undefined ? {} : { secureContext: shared.secureContext }),
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      ...(session === undefined ? {} : { session }),
      rejectUnauthorized: options.ca !== undefined
    })
    tls = secured
    socket = secured
    reader = ReplyReader.make()
    secured.setTimeout(options.timeoutMs)
    secured.on("data", onData)
    secured.on("error", onError)
    secured.on("close", onClose)
    secured.on("timeout", onTimeout)
    // Only with --resume: each ticket received is serialized into a Buffer for the listener.
    if (options.resume) secured.on("session", observer.session)
    secured.once("secureConnect", () => {
      if (done) return
      observer.handshake(secured.isSessionReused(), micros(started), secured)
      if (options.tls === "implicit") step = Greeting
      else {
        step = Ehlo
        secured.write(`EHLO ${options.ehlo}\r\n`)
      }
    })
  }

  plain.on("error", onError)
  plain.on("timeout", onTimeout)
  plain.on("close", onClose)
  plain.once("connect", () => {
    if (done) return
    if (options.tls === "implicit") upgrade()
    else {
      step = Greeting
      plain.on("data", onData)
    }
  })
}
