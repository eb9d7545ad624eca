/**
 * The TLS settings in their decoded form: what the configuration's `tls` section becomes once
 * validated, with defaults applied, durations in milliseconds and paths absolute. The
 * certificate store and the session's upgrade read only this, never the configuration schema.
 */

export type TlsVersion = "TLSv1.2" | "TLSv1.3"

/** What a handshake may negotiate, server-wide or for one domain. */
export interface ProtocolSettings {
  readonly minVersion: TlsVersion
  readonly maxVersion: TlsVersion
  /** TLS 1.2 cipher list in OpenSSL syntax. */
  readonly ciphers: string
  /** TLS 1.3 cipher suites, colon-separated. */
  readonly cipherSuites: string
  /** Key exchange groups in preference order (Node's `ecdhCurve`), colon-separated. */
  readonly groups: string
  /** The server's cipher order wins over the client's (Postfix's tls_preempt_cipherlist). */
  readonly preferServerCiphers: boolean
}

/** A certificate chain and its key, as files. */
export interface CertificateFiles {
  /** PEM: the certificate first, then its intermediates. */
  readonly certificate: string
  /** PEM: RSA (PKCS#1), PKCS#8 or EC (SEC1), optionally encrypted. */
  readonly key: string
  readonly passphrase?: string
}

/** A certificate served for some server names, with its own protocol settings. */
export interface DomainTls {
  /** Exact names ("mail.example.org") and wildcards ("*.example.org"), lower case. */
  readonly names: ReadonlyArray<string>
  readonly files: CertificateFiles
  /** The server's settings with this domain's overrides applied. */
  readonly protocol: ProtocolSettings
}

export interface ClientCertificateSettings {
  /** Ask clients for a certificate (they may still send none). */
  readonly request: boolean
  /** PEM file of the CAs a client certificate must chain to. */
  readonly ca?: string
}

export interface SessionTicketSettings {
  /** How long a ticket may resume a session. */
  readonly lifetime: number
  /** How often the ticket key changes; every worker derives the same key for the same period. */
  readonly rotation: number
}

export interface TlsSettings {
  /** Served to clients that send no SNI or an unknown name; none means such handshakes fail. */
  readonly defaultCertificate: CertificateFiles | undefined
  readonly domains: ReadonlyArray<DomainTls>
  readonly protocol: ProtocolSettings
  /** Fail handshakes whose SNI matches no domain, even when a default certificate exists. */
  readonly requireSni: boolean
  readonly handshakeTimeout: number
  readonly sessionTickets: SessionTicketSettings
  readonly clientCertificates: ClientCertificateSettings
  /** A certificate that expires within this many milliseconds is reported at load. */
  readonly expiryWarning: number
}

/** Secure defaults: TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers, the server's order. */
export const defaultProtocol: ProtocolSettings = {
  minVersion: "TLSv1.2",
  maxVersion: "TLSv1.3",
  ciphers: [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256"
  ].join(":"),
  cipherSuites: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
  groups: "X25519:P-256:P-384",
  preferServerCiphers: true
}
