/**
 * Node's own ceiling for the TLS benchmark: the least an SMTP server on bare `node:net` and
 * `node:tls` can do for the benchmark's exchange. It greets, answers EHLO (advertising STARTTLS
 * before TLS on the STARTTLS port), upgrades on STARTTLS with `new TLSSocket(socket,
 * { isServer: true })`, and gives fixed replies to MAIL, RCPT, DATA, the final dot and QUIT.
 * It checks nothing and stores nothing: what Postern spends beyond it per handshake is
 * Postern's own cost. Its TLS settings are Postern's defaults (src/tls/TlsSettings.ts: cipher
 * lists, server preference, key exchange groups), so both negotiate the same handshake; Node's
 * own default would pick the costlier X25519MLKEM768 hybrid group.
 *
 * As a program (one process, both ports):
 *
 *   node bench/tls-responder.ts --cert cert.pem --key key.pem [--host 127.0.0.1]
 *     [--starttls-port N] [--implicit-port N] [--min-version TLSv1.2] [--max-version TLSv1.3]
 *
 * A port of 0 picks a free one; the ports are printed on stdout as one JSON line
 * (`{"starttls":N,"implicit":N}`). SIGTERM or SIGINT stops it.
 */
import * as NodeFs from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { defaultProtocol } from "../src/tls/TlsSettings.ts"

/** Where and how the responder listens. */
export interface ResponderOptions {
  /** PEM certificate (chain) and key. */
  readonly cert: string
  readonly key: string
  readonly host: string
  /** Plaintext port with STARTTLS; 0 for a free one; undefined for none. */
  readonly starttlsPort: number | undefined
  /** Implicit TLS port; 0 for a free one; undefined for none. */
  readonly implicitPort: number | undefined
  readonly minVersion?: Tls.SecureVersion
  readonly maxVersion?: Tls.SecureVersion
  readonly hostname?: string
}

/** A running responder. */
export interface Responder {
  readonly starttlsPort: number | undefined
  readonly implicitPort: number | undefined
  /** Stops listening and drops every connection. */
  readonly close: () => Promise<void>
}

const replies = (hostname: string) => ({
  greeting: `220 ${hostname} ESMTP bench responder\r\n`,
  ehloPlain: `250-${hostname}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n`,
  ehloSecure: `250-${hostname}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n`,
  helo: `250 ${hostname}\r\n`,
  startTls: "220 2.0.0 Ready to start TLS\r\n",
  mail: "250 2.1.0 Ok\r\n",
  rcpt: "250 2.1.5 Ok\r\n",
  data: "354 End data with <CR><LF>.<CR><LF>\r\n",
  queued: "250 2.0.0 Ok: queued\r\n",
  ok: "250 2.0.0 Ok\r\n",
  bye: "221 2.0.0 Bye\r\n",
  noTls: "454 4.7.0 TLS not available\r\n",
  unknown: "502 5.5.2 Error: command not recognized\r\n"
})

type Replies = ReturnType<typeof replies>

const dataEnd = "\r\n.\r\n"

/**
 * Serves one SMTP session on `socket`. `secured` says whether it already runs inside TLS;
 * `upgrade` (STARTTLS port only) turns the plaintext socket into a TLS one.
 */
const serve = (
  socket: Net.Socket,
  secured: boolean,
  text: Replies,
  upgrade: ((plain: Net.Socket) => void) | undefined
): void => {
  let buffer = ""
  let inData = false
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString("latin1")
    while (buffer.length > 0) {
      if (inData) {
        const end = buffer.indexOf(dataEnd)
        if (end === -1) {
          // Only the end can be the start of a terminator split across reads.
          buffer = buffer.slice(-4)
          return
        }
        buffer = buffer.slice(end + dataEnd.length)
        inData = false
        socket.write(text.queued)
        continue
      }
      const newline = buffer.indexOf("\r\n")
      if (newline === -1) return
      const line = buffer.slice(0, newline)
      buffer = buffer.slice(newline + 2)
      const verb = line.slice(0, 4).toUpperCase()
      if (verb === "EHLO") socket.write(secured || upgrade === undefined ? text.ehloSecure : text.ehloPlain)
      else if (verb === "HELO") socket.write(text.helo)
      else if (verb === "MAIL") socket.write(text.mail)
      else if (verb === "RCPT") socket.write(text.rcpt)
      else if (verb === "DATA") {
        inData = true
        // The CRLF that ended the DATA line is the terminator's first one for an empty message.
        buffer = `\r\n${buffer}`
        socket.write(text.data)
      } else if (verb === "QUIT") {
        socket.end(text.bye)
        return
      } else if (verb === "STAR" && line.toUpperCase() === "STARTTLS") {
        if (secured || upgrade === undefined) {
          socket.write(text.noTls)
          continue
        }
        // Whatever the client pipelined after STARTTLS is dropped, never read inside TLS.
        socket.removeListener("data", onData)
        socket.write(text.startTls)
        upgrade(socket)
        return
      } else if (verb === "RSET" || verb === "NOOP") socket.write(text.ok)
      else socket.write(text.unknown)
    }
  }
  socket.on("data", onData)
  socket.on("error", () => socket.destroy())
}

const listen = (server: Net.Server, host: string, port: number): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen({ host, port, backlog: 1024 }, () => {
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : port)
    })
  })

/** Starts the responder on the ports asked for. */
export const start = async (options: ResponderOptions): Promise<Responder> => {
  const text = replies(options.hostname ?? "responder.bench.test")
  const contextOptions: Tls.SecureContextOptions = {
    cert: options.cert,
    key: options.key,
    ciphers: `${defaultProtocol.cipherSuites}:${defaultProtocol.ciphers}`,
    ecdhCurve: defaultProtocol.groups,
    honorCipherOrder: defaultProtocol.preferServerCiphers,
    ...(options.minVersion === undefined ? {} : { minVersion: options.minVersion }),
    ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion })
  }
  const secureContext = Tls.createSecureContext(contextOptions)
  const sockets = new Set<Net.Socket>()
  const track = (socket: Net.Socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  }

  const upgrade = (plain: Net.Socket) => {
    const secure = new Tls.TLSSocket(plain, { isServer: true, secureContext })
    track(secure)
    secure.on("error", () => secure.destroy())
    secure.once("secure", () => serve(secure, true, text, undefined))
  }

  const servers: Array<Net.Server> = []
  let starttlsPort: number | undefined
  let implicitPort: number | undefined
  if (options.starttlsPort !== undefined) {
    const server = Net.createServer({ noDelay: true }, (socket) => {
      track(socket)
      serve(socket, false, text, upgrade)
      socket.write(text.greeting)
    })
    servers.push(server)
    starttlsPort = await listen(server, options.host, options.starttlsPort)
  }
  if (options.implicitPort !== undefined) {
    // tls.Server builds its own context from these options (it takes no `secureContext`).
    const server = Tls.createServer({ ...contextOptions, noDelay: true }, (socket) => {
      track(socket)
      serve(socket, true, text, undefined)
      // Written at once on the secured socket: no wait on the client's delayed ACK.
      socket.write(text.greeting)
    })
    server.on("tlsClientError", (_error, socket) => socket.destroy())
    servers.push(server)
    implicitPort = await listen(server, options.host, options.implicitPort)
  }
  const close = async () => {
    for (const socket of sockets) socket.destroy()
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
  }
  return { starttlsPort, implicitPort, close }
}

const main = async () => {
  const { values } = parseArgs({
    options: {
      cert: { type: "string" },
      key: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      "starttls-port": { type: "string" },
      "implicit-port": { type: "string" },
      "min-version": { type: "string" },
      "max-version": { type: "string" }
    },
    strict: true
  })
  if (values.cert === undefined || values.key === undefined) {
    process.stderr.write("usage: node bench/tls-responder.ts --cert FILE --key FILE [--starttls-port N] [--implicit-port N]\n")
    process.exit(2)
  }
  const version = (value: string | undefined): Tls.SecureVersion | undefined =>
    value === "TLSv1.2" || value === "TLSv1.3" ? value : undefined
  const port = (value: string | undefined) => (value === undefined ? undefined : Number(value))
  const minVersion = version(values["min-version"])
  const maxVersion = version(values["max-version"])
  const responder = await start({
    cert: NodeFs.readFileSync(values.cert, "utf8"),
    key: NodeFs.readFileSync(values.key, "utf8"),
    host: values.host,
    starttlsPort: port(values["starttls-port"]),
    implicitPort: port(values["implicit-port"]),
    ...(minVersion === undefined ? {} : { minVersion }),
    ...(maxVersion === undefined ? {} : { maxVersion })
  })
  process.stdout.write(`${JSON.stringify({ starttls: responder.starttlsPort ?? null, implicit: responder.implicitPort ?? null })}\n`)
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      void responder.close().then(() => process.exit(0))
    })
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
