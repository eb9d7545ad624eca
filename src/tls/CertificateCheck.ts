/**
 * Reading and checking one certificate chain and its private key, as configured files.
 *
 * The checks are those an administrator wants to hear about before a client does: the key
 * belongs to the certificate, the chain is in order (leaf first, each certificate issued by
 * the next), every certificate is within its validity, and the certificate covers the names
 * it is configured to serve. A failure names the file at fault; a certificate close to its
 * end is loaded with a warning.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import { Effect, Schema } from "effect"
import * as ServerName from "./ServerName.ts"
import type * as TlsSettings from "./TlsSettings.ts"
import * as SystemError from "../log/SystemError.ts"

/** A certificate or key file that cannot be read or fails a check. */
export class CertificateError extends Schema.TaggedError<CertificateError>()("CertificateError", {
  file: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.file}: ${this.reason}`
  }
}

/** A checked certificate chain and key, ready for `tls.createSecureContext`. */
export interface LoadedCertificate {
  /** The configured name it serves (the first of its domain's names), or "default". */
  readonly name: string
  readonly files: TlsSettings.CertificateFiles
  /** The files' contents: the chain (leaf first) and the key (still encrypted if it was). */
  readonly pem: { readonly cert: string; readonly key: string }
  /** The leaf's subject, one "KEY=value" per attribute, comma-separated. */
  readonly subject: string
  /** The leaf's DNS subjectAltNames (its CN when it has none). */
  readonly names: ReadonlyArray<string>
  /** When the first certificate of the chain expires (ms since the epoch). */
  readonly notAfter: number
  /** SHA-256 of the leaf, colon-separated upper-case hex. */
  readonly fingerprint256: string
  /** Whether `notAfter` falls within the warning window. */
  readonly expiring: boolean
  /** What is worth telling but does not stop the certificate from being served. */
  readonly warnings: ReadonlyArray<string>
}

/** What a certificate is checked against. */
export interface CheckOptions {
  /** The configured name it serves, or "default" (recorded, not checked). */
  readonly name: string
  /** Configured server names the certificate must cover (exact or wildcard). */
  readonly serves: ReadonlyArray<string>
  /** The time to check validity at (ms since the epoch). */
  readonly now: number
  /** A certificate expiring within this many ms gets a warning. */
  readonly expiryWarning: number
}

/** The file contents to check, as read. */
export interface Contents {
  readonly files: TlsSettings.CertificateFiles
  readonly certificatePem: string
  readonly keyPem: string
}

const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

const day = 86_400_000

const describe = (error: unknown): string => {
  const message = SystemError.describe(error)
  // OpenSSL prefixes its messages with a thread id and error code; the reason is the tail.
  const openssl = /error:[0-9A-F]+:[^:]*:[^:]*:([^:\n]+)/.exec(message)
  return openssl?.[1] ?? message
}

const encryptedKey = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/

const keyReason = (error: unknown, keyPem: string, passphrase: string | undefined): string => {
  if (encryptedKey.test(keyPem)) {
    return passphrase === undefined
      ? "the private key is encrypted and no passphrase is configured"
      : `the private key cannot be decrypted with the configured passphrase (${describe(error)})`
  }
  return `not a readable private key (RSA PKCS#1, PKCS#8 or EC SEC1 PEM): ${describe(error)}`
}

const subjectOf = (certificate: Crypto.X509Certificate): string => certificate.subject.split("\n").join(", ")

/** The DNS names of the subjectAltName, in the order of the certificate. */
export const dnsNames = (certificate: Crypto.X509Certificate): ReadonlyArray<string> =>
  (certificate.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4).toLowerCase())

const commonName = (certificate: Crypto.X509Certificate): string | undefined =>
  /^CN=(.*)$/m.exec(certificate.subject)?.[1]?.toLowerCase()

/** Splits a PEM file into its certificates, in file order. */
export const parseChain = (pem: string): ReadonlyArray<Crypto.X509Certificate> =>
  (pem.match(certificateBlock) ?? []).map((block) => new Crypto.X509Certificate(block))

const fail = (file: string, reason: string) => Effect.fail(new CertificateError({ file, reason }))

const dateOf = (millis: number): string => new Date(millis).toISOString()

/**
 * Checks file contents already read (no I/O). Fails with the first problem found, naming the
 * certificate or the key file.
 */
export const check = (contents: Contents, options: CheckOptions): Effect.Effect<LoadedCertificate, CertificateError> =>
  Effect.suspend(() => {
    const { files } = contents
    const certFile = files.certificate
    let chain: ReadonlyArray<Crypto.X509Certificate>
    try {
      chain = parseChain(contents.certificatePem)
    } catch (error) {
      return fail(certFile, `not a readable PEM certificate: ${describe(error)}`)
    }
    const leaf = chain[0]
    if (leaf === undefined) return fail(certFile, "no PEM certificate (BEGIN CERTIFICATE) in the file")
    let key: Crypto.KeyObject
    try {
      key = Crypto.createPrivateKey({
        key: contents.keyPem,
        format: "pem",
        ...(files.passphrase === undefined ? {} : { passphrase: files.passphrase })
      })
    } catch (error) {
      return fail(files.key, keyReason(error, contents.keyPem, files.passphrase))
    }
    if (!leaf.checkPrivateKey(key)) {
      const later = chain.findIndex((c) => c.checkPrivateKey(key))
      return later > 0
        ? fail(
          certFile,
          `the chain is out of order: the key's certificate (${subjectOf(chain[later] ?? leaf)}) is certificate ${
            later + 1
          }, it must come first`
        )
        : fail(files.key, `the private key does not match the certificate in ${certFile} (${subjectOf(leaf)})`)
    }
    for (let i = 0; i + 1 < chain.length; i++) {
      const subject = chain[i]
      const issuer = chain[i + 1]
      if (subject === undefined || issuer === undefined) continue
      if (!subject.checkIssued(issuer) || !subject.verify(issuer.publicKey)) {
        return fail(
          certFile,
          `certificate ${i + 1} (${subjectOf(subject)}) is not issued by certificate ${i + 2} (${subjectOf(issuer)}): ` +
            "the chain must be the leaf first, then each issuer in turn"
        )
      }
    }
    let notAfter = Number.POSITIVE_INFINITY
    for (const [i, certificate] of chain.entries()) {
      const from = certificate.validFromDate.getTime()
      const to = certificate.validToDate.getTime()
      const which = i === 0 ? "the certificate" : `certificate ${i + 1} of the chain (${subjectOf(certificate)})`
      if (from > options.now) return fail(certFile, `${which} is not valid before ${dateOf(from)}`)
      if (to <= options.now) return fail(certFile, `${which} expired on ${dateOf(to)}`)
      notAfter = Math.min(notAfter, to)
    }
    const sans = dnsNames(leaf)
    const cn = commonName(leaf)
    const names = sans.length > 0 ? sans : cn === undefined ? [] : [cn]
    const uncovered = options.serves.filter((name) => !names.some((n) => ServerName.covers(n, name)))
    if (uncovered.length > 0) {
      return fail(
        certFile,
        `the certificate does not cover ${uncovered.join(", ")} (it names ${names.length > 0 ? names.join(", ") : "nothing"})`
      )
    }
    const expiring = notAfter - options.now <= options.expiryWarning
    const warnings = expiring
      ? [`expires on ${dateOf(notAfter)}, in ${Math.max(0, Math.floor((notAfter - options.now) / day))} days`]
      : []
    return Effect.succeed({
      name: options.name,
      files,
      pem: { cert: contents.certificatePem, key: contents.keyPem },
      subject: subjectOf(leaf),
      names,
      notAfter,
      fingerprint256: leaf.fingerprint256,
      expiring,
      warnings
    })
  })

const readText = (file: string): Effect.Effect<string, CertificateError> =>
  Effect.tryPromise({
    try: () => Fs.readFile(file, "utf8"),
    catch: (error) => new CertificateError({ file, reason: `cannot be read: ${describe(error)}` })
  })

/** Reads a certificate's files and checks them. */
export const load = (
  files: TlsSettings.CertificateFiles,
  options: CheckOptions
): Effect.Effect<LoadedCertificate, CertificateError> =>
  Effect.gen(function*() {
    const certificatePem = yield* readText(files.certificate)
    const keyPem = yield* readText(files.key)
    return yield* check({ files, certificatePem, keyPem }, options)
  })

/** Reads a PEM file of CA certificates (for client certificate verification). */
export const loadAuthorities = (file: string): Effect.Effect<string, CertificateError> =>
  Effect.gen(function*() {
    const pem = yield* readText(file)
    const count = yield* Effect.try({
      try: () => parseChain(pem).length,
      catch: (error) => new CertificateError({ file, reason: `not a readable PEM certificate: ${describe(error)}` })
    })
    if (count === 0) return yield* fail(file, "no PEM certificate (BEGIN CERTIFICATE) in the file")
    return pem
  })
