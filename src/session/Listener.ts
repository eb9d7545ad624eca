/**
 * The listeners of one worker: accept connections, admit them within the connection limits,
 * read a PROXY protocol header where configured, and run one session fiber per connection.
 *
 * Admission is decided here, but the refusal itself is the machine's (a recorded session that
 * answers 421 4.7.0), so that refused clients show up in the log and in replay like any other.
 */
import * as Net from "node:net"
import { Duration, Effect, FiberSet, Schema, type Scope } from "effect"
import type * as Event from "../log/Event.ts"
import type { EventLog } from "../log/EventLog.ts"
import * as Network from "../policy/Network.ts"
import type { Policy } from "../policy/Policy.ts"
import type { Queue } from "../queue/Queue.ts"
import * as Connection from "../tls/Connection.ts"
import type * as Handshake from "../tls/Handshake.ts"
import type * as Framer from "./Framer.ts"
import * as Bytes from "./Bytes.ts"
import * as ProxyProtocol from "./ProxyProtocol.ts"
import * as Session from "./Session.ts"

export class ListenError extends Schema.TaggedError<ListenError>()("ListenError", {
  address: Schema.String,
  port: Schema.Number,
  message: Schema.String
}) {}

export interface ListenerSpec {
  readonly address: string
  readonly port: number
  readonly role: Event.Role
  readonly security: Event.Security
  /** SMTP AUTH is offered on this listener. */
  readonly auth: boolean
  readonly proxyProtocol: { readonly trustedNetworks: ReadonlyArray<string> } | undefined
}

export interface ListenerOptions {
  readonly listeners: ReadonlyArray<ListenerSpec>
  /** Prefix of session ids: the worker's partition, so ids stay unique across workers. */
  readonly partition: string
  /** The settings in force for new sessions (SIGHUP may replace them) and their digest. */
  readonly current: () => { readonly settings: Event.MachineSettings; readonly digest: string }
  readonly framing: Framer.FramerLimits
  readonly timeouts: Session.SessionOptions["timeouts"]
  /** Limits for this worker (the daemon divides the configured ones among its workers). */
  readonly maxConnections: number
  readonly maxConnectionsPerClient: number
  readonly proxyHeaderTimeout: number
  /** The TLS handshake for STARTTLS and implicit TLS; undefined serves no TLS at all. */
  readonly tls: Handshake.Upgrade | undefined
  /** How AUTH credentials are checked, and the delay before a 535. */
  readonly auth: Omit<Session.AuthOptions, "offered">
  /** SPF checking at MAIL, when on. */
  readonly spf?: Session.SessionOptions["spf"]
  /** DKIM and DMARC at data, when on. */
  readonly messageAuth?: Session.SessionOptions["messageAuth"]
  /** DKIM signing keys, when any. */
  readonly dkimKeys?: Session.SessionOptions["dkimKeys"]
  /** Reverse lookup of a client address, when enabled; undefined when no name is found. */
  readonly resolveName: ((address: string) => Effect.Effect<string | undefined>) | undefined
}

export interface Listeners {
  /** The ports actually bound, in the order of `listeners` (port 0 binds an ephemeral one). */
  readonly ports: ReadonlyArray<number>
  /** Stops accepting, answers idle sessions with 421, and waits up to `grace` for the rest. */
  readonly shutdown: (grace: number) => Effect.Effect<void>
  readonly activeSessions: () => number
}

/** IPv4 clients on a dual-stack socket appear as `::ffff:a.b.c.d`; record them as IPv4. */
export const normalizeAddress = (address: string | undefined): string =>
  address === undefined ? "unknown" : address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address

interface Admissions {
  readonly admit: (ip: string) => Event.Admission
  readonly release: (ip: string) => void
}

const makeAdmissions = (maxTotal: number, maxPerClient: number): Admissions => {
  const perClient = new Map<string, number>()
  let total = 0
  return {
    admit: (ip) => {
      if (total >= maxTotal) return "global-limit"
      const current = perClient.get(ip) ?? 0
      if (current >= maxPerClient) return "client-limit"
      total++
      perClient.set(ip, current + 1)
      return "ok"
    },
    release: (ip) => {
      total--
      const current = (perClient.get(ip) ?? 1) - 1
      if (current <= 0) perClient.delete(ip)
      else perClient.set(ip, current)
    }
  }
}

const listen = (server: Net.Server, spec: ListenerSpec): Effect.Effect<number, ListenError> =>
  Effect.callback<number, ListenError>((resume) => {
    const onError = (error: Error) =>
      resume(Effect.fail(new ListenError({ address: spec.address, port: spec.port, message: error.message })))
    server.once("error", onError)
    server.listen({ host: spec.address, port: spec.port, backlog: 4096 }, () => {
      server.off("error", onError)
      const bound = server.address()
      resume(Effect.succeed(typeof bound === "object" && bound !== null ? bound.port : spec.port))
    })
  })

/** A PROXY header and the bytes that came after it. */
interface Proxied {
  readonly header: ProxyProtocol.ProxyHeader
  readonly rest: Uint8Array
}

/** Reads the PROXY header from the start of the connection; fails on garbage or silence. */
const readProxyHeader = (connection: Connection.Connection, timeout: number): Effect.Effect<Proxied, string> => {
  const deadline = Date.now() + timeout
  const readFrom = (bytes: Uint8Array): Effect.Effect<Proxied, string> => {
    const result = ProxyProtocol.parse(bytes)
    if (result._tag === "Header") return Effect.succeed({ header: result.header, rest: bytes.subarray(result.consumed) })
    if (result._tag === "Invalid") return Effect.fail(result.reason)
    return Effect.flatMap(connection.readWithin(Math.max(0, deadline - Date.now())), (chunk) => {
      if (chunk === Connection.TimedOut) return Effect.fail("timeout")
      if (chunk === undefined || chunk === Connection.Signalled) return Effect.fail("connection closed")
      return readFrom(Bytes.concat([bytes, chunk]))
    })
  }
  return Effect.suspend(() => readFrom(new Uint8Array(0)))
}

export const serve = Effect.fnUntraced(function*(
  options: ListenerOptions
): Effect.fn.Return<Listeners, ListenError, EventLog | Queue | Policy | Scope.Scope> {
  const fibers = yield* FiberSet.make<void, never>()
  const run = yield* FiberSet.runtime(fibers)<EventLog | Queue | Policy>()
  const admissions = makeAdmissions(options.maxConnections, options.maxConnectionsPerClient)
  const live = new Set<Connection.Connection>()
  let shuttingDown = false
  let counter = 0
  const servers: Array<Net.Server> = []

  const sessionId = (): string => `${options.partition}-${Date.now().toString(36)}-${(counter++).toString(36)}`

  const isShuttingDown = () => shuttingDown

  const accept = (spec: ListenerSpec, trusted: ReadonlyArray<Network.Network>) => {
    // What every session of this listener shares, made once.
    const security = options.tls === undefined ? "none" : spec.security
    const auth = { ...options.auth, offered: spec.auth }
    return (socket: Net.Socket) => {
      socket.setNoDelay(true)
      const connection = Connection.fromSocket(socket, { writeTimeout: options.timeouts.command })
      const tcpPeer: Event.Endpoint = { address: normalizeAddress(socket.remoteAddress), port: socket.remotePort ?? 0 }
      const local: Event.Endpoint = { address: normalizeAddress(socket.localAddress), port: socket.localPort ?? 0 }
      const expectProxy = spec.proxyProtocol !== undefined && Network.inNetworks(tcpPeer.address, trusted)
      // In `live` from the first byte, so that shutdown reaches connections still sending a
      // PROXY header and the global limit counts them.
      live.add(connection)

      /** The session once the client is known: admitted or refused, then served. */
      const sessionFor = (peer: Event.Endpoint, proxiedBy: Event.Endpoint | undefined, initial: Uint8Array | undefined) =>
        Effect.suspend(() => {
          const admission: Event.Admission = shuttingDown ? "shutdown" : admissions.admit(peer.address)
          const admitted = admission === "ok"
          const clientName = admitted && options.resolveName !== undefined
            ? options.resolveName(peer.address)
            : Effect.succeed(undefined)
          return Effect.flatMap(clientName, (clientName) => {
            const { settings, digest } = options.current()
            return Session.run(connection, {
              id: sessionId(),
              role: spec.role,
              peer,
              local,
              proxiedBy,
              clientName,
              admission,
              security,
              auth,
              spf: options.spf,
              messageAuth: options.messageAuth,
              dkimKeys: options.dkimKeys,
              tls: options.tls,
              initial,
              settings,
              settingsDigest: digest,
              limits: options.framing,
              timeouts: options.timeouts,
              shuttingDown: isShuttingDown
            })
          }).pipe(Effect.ensuring(Effect.sync(() => {
            if (admitted) admissions.release(peer.address)
          })))
        })

      // Combinators, not generators: see Session.serve on why nothing per connection is a generator.
      const session = expectProxy
        ? Effect.suspend(() => {
          if (live.size > options.maxConnections) return connection.close
          return Effect.flatMap(Effect.result(readProxyHeader(connection, options.proxyHeaderTimeout)), (proxied) => {
            if (proxied._tag === "Failure") return connection.close
            const source = proxied.success.header.source
            return source === undefined
              ? sessionFor(tcpPeer, undefined, proxied.success.rest)
              : sessionFor({ address: normalizeAddress(source.address), port: source.port }, tcpPeer, proxied.success.rest)
          })
        })
        : sessionFor(tcpPeer, undefined, undefined)
      // A session never fails by design; a defect ends that session only, never the listener.
      run(session.pipe(
        Effect.ensuring(Effect.sync(() => live.delete(connection))),
        Effect.catchCause((cause) => Effect.andThen(Effect.logError("session defect", cause), connection.close))
      ))
    }
  }

  for (const spec of options.listeners) {
    if (spec.security === "implicit" && options.tls === undefined) {
      return yield* new ListenError({
        address: spec.address,
        port: spec.port,
        message: "role \"submissions\" is implicit TLS and no TLS is configured; refusing to serve it in plaintext"
      })
    }
    const trusted = (spec.proxyProtocol?.trustedNetworks ?? []).flatMap((text) => {
      const parsed = Network.parseNetwork(text)
      return parsed.ok ? [parsed.network] : []
    })
    // allowHalfOpen: a client may send QUIT and shut down its side at once; its replies (the
    // 250 for a message it pipelined) must still reach it, or it retries a queued message.
    const server = Net.createServer({ noDelay: true, allowHalfOpen: true }, accept(spec, trusted))
    server.maxConnections = Number.MAX_SAFE_INTEGER
    server.on("error", (error) => {
      void Effect.runFork(Effect.logError("listener error", error.message))
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => server.close()))
    servers.push(server)
  }

  const ports: Array<number> = []
  for (let i = 0; i < options.listeners.length; i++) {
    const spec = options.listeners[i]
    const server = servers[i]
    if (spec === undefined || server === undefined) continue
    ports.push(yield* listen(server, spec))
  }

  const shutdown = (grace: number) =>
    Effect.gen(function*() {
      shuttingDown = true
      for (const server of servers) server.close()
      for (const connection of live) connection.signal()
      yield* FiberSet.awaitEmpty(fibers).pipe(Effect.timeoutOption(Duration.millis(grace)))
      yield* FiberSet.clear(fibers)
    })

  return { ports, shutdown, activeSessions: () => live.size }
})
