/**
 * The server side of a TLS handshake as the session needs it: the options from the
 * certificate store, the upgrade of the connection, and the negotiated facts that go into the
 * event log, the Received header and (later) policy.
 */
import type * as Tls from "node:tls"
import { Effect } from "effect"
import type * as Event from "../log/Event.ts"
import type * as Connection from "./Connection.ts"
import * as CertStore from "./CertStore.ts"
import type * as HandshakeFailure from "./HandshakeFailure.ts"

/** Which certificate a handshake served, and why. */
export interface Served {
  readonly certificate: string
  readonly match: Event.CertificateMatch
}

/** Performs a handshake over a connection and returns its facts. */
export type Upgrade = (
  connection: Connection.Connection,
  preRead?: Uint8Array
) => Effect.Effect<Event.TlsFacts, HandshakeFailure.HandshakeFailure>

const defaultServed: Served = { certificate: "default", match: "default" }

/**
 * Secret bits of a cipher, from its name: Node reports no bit counts, and the Received header
 * shows them as Postfix does ("(256/256 bits)").
 */
export const cipherBits = (cipher: string): number => {
  const name = cipher.toUpperCase()
  if (/AES_?256|CHACHA20|CAMELLIA256|ARIA256/.test(name)) return 256
  if (/AES_?128|CAMELLIA128|ARIA128/.test(name)) return 128
  return 0
}

/**
 * The negotiated facts of an established server socket. `clientHelloName` is the SNI read from
 * the ClientHello, for when Node reports none (a resumed TLS 1.2 session).
 */
export const factsOf = (socket: Tls.TLSSocket, served: Served, clientHelloName?: string): Event.TlsFacts => {
  const cipher = socket.getCipher()
  const bits = cipherBits(cipher.name)
  const reported = (socket as Tls.TLSSocket & { readonly servername?: string | false | null }).servername
  const servername = typeof reported === "string" && reported !== "" ? reported : clientHelloName
  const peer = CertStore.clientCertificate(socket)
  return {
    version: socket.getProtocol() ?? cipher.version,
    cipher: cipher.name,
    bits,
    algorithmBits: bits,
    ...(typeof servername === "string" && servername !== "" ? { sni: servername } : {}),
    certificate: served.certificate,
    match: served.match,
    resumed: socket.isSessionReused(),
    ...(peer === undefined ? {} : { clientCertificate: peer })
  }
}

/**
 * A client that sent no server name where no certificate is served without one (`requireSni`,
 * or no default) fails in OpenSSL for want of a certificate to sign with, which reads as "no
 * shared cipher"; the cause is the missing name.
 */
const withoutServerName = (
  failure: HandshakeFailure.HandshakeFailure,
  store: CertStore.CertStore
): HandshakeFailure.HandshakeFailure =>
  failure.clientHello !== undefined && failure.clientHello.serverName === undefined &&
    failure.reason === "no-shared-cipher" && store.resolve(undefined) === undefined
    ? {
      ...failure,
      reason: "unknown-sni",
      detail: `the client sent no server name, and none is served without one (${failure.detail})`
    }
    : failure

/**
 * An upgrade that takes its options from the store in service at each handshake (a reload
 * serves new connections, open ones keep theirs) and gives up after `timeout` ms. Node runs
 * no SNI callback for a client without SNI or resuming a session, so the certificate is then
 * looked up from the established socket.
 */
export const make = (store: () => CertStore.CertStore, settings: { readonly timeout: number }): Upgrade =>
(connection, preRead) =>
  Effect.suspend(() => {
    const current = store()
    let resolved: Served | undefined
    let refused: HandshakeFailure.HandshakeFailure | undefined
    const options = current.serverOptions(
      (resolution) => {
        resolved = resolution
      },
      (refusal) => {
        refused = { reason: refusal.reason, detail: refusal.detail }
      }
    )
    return connection.startTls(options, settings.timeout, preRead).pipe(
      Effect.mapError((failure) => refused ?? withoutServerName(failure, current)),
      Effect.map(({ clientHelloName, socket }) => {
        // Without an SNI callback (no SNI, or a resumed session) the certificate is the one the
        // name the client asked for resolves to: the one its session was made with.
        const byName = clientHelloName === undefined ? undefined : current.resolve(clientHelloName)
        return factsOf(socket, resolved ?? byName ?? current.resolutionOf(socket) ?? defaultServed, clientHelloName)
      })
    )
  })

/** The Received header's TLS comment, as Postfix's smtpd_tls_received_header writes it. */
export const receivedComment = (facts: Event.TlsFacts): string =>
  `using ${facts.version} with cipher ${facts.cipher} (${facts.bits}/${facts.algorithmBits} bits)`
