/**
 * The server side of a TLS handshake as the session needs it: the options from the
 * certificate store, the upgrade of the connection, and the negotiated facts that go into the
 * event log, the Received header and (later) policy.
 */
import type * as Tls from "node:tls"
import { Effect } from "effect"
import type * as Event from "../log/Event.ts"
import type * as Connection from "./Connection.ts"
import type * as HandshakeFailure from "./HandshakeFailure.ts"

/** Which certificate a handshake served, and why. */
export interface Served {
  readonly certificate: string
  readonly match: Event.CertificateMatch
}

/** The part of the certificate store a handshake needs. */
export interface CertificateChooser {
  /**
   * Options for a server `TLSSocket`. `onResolved` is called when the client's SNI picked a
   * certificate; a handshake without SNI (or whose name fell back to the default) reports
   * nothing and got the default.
   */
  readonly serverOptions: (onResolved: (served: Served) => void) => Tls.TLSSocketOptions
}

/** Performs a handshake over a connection and returns its facts. */
export type Upgrade = (
  connection: Connection.Connection
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

/** The negotiated facts of an established server socket. */
export const factsOf = (socket: Tls.TLSSocket, served: Served, requestedClientCertificate: boolean): Event.TlsFacts => {
  const cipher = socket.getCipher()
  const bits = cipherBits(cipher.name)
  const servername = (socket as Tls.TLSSocket & { readonly servername?: string | false | null }).servername
  const peer = requestedClientCertificate ? socket.getPeerX509Certificate() : undefined
  return {
    version: socket.getProtocol() ?? cipher.version,
    cipher: cipher.name,
    bits,
    algorithmBits: bits,
    ...(typeof servername === "string" && servername !== "" ? { sni: servername } : {}),
    certificate: served.certificate,
    match: served.match,
    resumed: socket.isSessionReused(),
    ...(peer === undefined
      ? {}
      : {
        clientCertificate: {
          subject: peer.subject.replace(/\n/g, ", "),
          fingerprint256: peer.fingerprint256,
          verified: socket.authorized
        }
      })
  }
}

/**
 * An upgrade that takes its options from `chooser()` at each handshake (so a reloaded store
 * serves new connections) and gives up after `timeout` ms.
 */
export const make = (
  chooser: () => CertificateChooser,
  settings: { readonly timeout: number; readonly requestClientCertificate: boolean }
): Upgrade =>
(connection) =>
  Effect.suspend(() => {
    let served = defaultServed
    const options = chooser().serverOptions((resolved) => {
      served = resolved
    })
    return connection.startTls(options, settings.timeout).pipe(
      Effect.map((socket) => factsOf(socket, served, settings.requestClientCertificate))
    )
  })

/** The Received header's TLS comment, as Postfix's smtpd_tls_received_header writes it. */
export const receivedComment = (facts: Event.TlsFacts): string =>
  `using ${facts.version} with cipher ${facts.cipher} (${facts.bits}/${facts.algorithmBits} bits)`
