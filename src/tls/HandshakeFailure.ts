/**
 * Why a TLS handshake failed, from what Node and OpenSSL report, in the closed set the event log
 * records (`Event.TlsFailure`). Pure: the error's code and message are all it looks at.
 */
import type * as Event from "../log/Event.ts"
import { describe, errorCode } from "../log/SystemError.ts"

/** A failed handshake: the kind, and OpenSSL's own words for the log. */
export interface HandshakeFailure {
  readonly reason: Event.TlsFailure
  readonly detail: string
  /** The ClientHello, when one arrived: the server name it asked for, if any. */
  readonly clientHello?: { readonly serverName: string | undefined }
}

const rules: ReadonlyArray<readonly [RegExp, Event.TlsFailure]> = [
  [/UNSUPPORTED_PROTOCOL|VERSION_TOO_LOW|VERSION_TOO_HIGH|unsupported protocol|no protocols available/i, "protocol-version"],
  [/NO_SHARED_CIPHER|no shared cipher|NO_SUITABLE_SIGNATURE|NO_SHARED_GROUP/i, "no-shared-cipher"],
  [/UNRECOGNIZED_NAME|unrecognized name/i, "unknown-sni"],
  [/ALERT|alert/i, "client-alert"],
  [/WRONG_VERSION_NUMBER|HTTP_REQUEST|PACKET_LENGTH|RECORD|DECRYPTION_FAILED|BAD_|wrong version number|record/i, "bad-record"],
  [/ECONNRESET|EPIPE|socket hang up|closed/i, "peer-closed"]
]

/** Classifies an error raised by a server-side `TLSSocket` during the handshake. */
export const classify = (error: unknown): HandshakeFailure => {
  const code = errorCode(error) ?? ""
  const message = describe(error)
  const text = `${code} ${message}`
  const rule = rules.find(([pattern]) => pattern.test(text))
  return { reason: rule?.[1] ?? "other", detail: (code === "" ? message : `${code}: ${message}`).slice(0, 300) }
}

export const timedOut = (millis: number): HandshakeFailure => ({
  reason: "timeout",
  detail: `no complete handshake within ${millis} ms`
})

export const peerClosed: HandshakeFailure = { reason: "peer-closed", detail: "connection closed during the handshake" }
