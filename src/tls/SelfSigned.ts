/**
 * The self-signed certificate of the embedded default configuration: made on first start,
 * reused afterwards, made again when it is unreadable, expired or close to it, or no longer
 * names the host.
 *
 * Several worker processes may start at once: one of them makes the certificate while holding
 * a lock file, and the others wait for it and read the result. The files are written to
 * temporary names and renamed into place, so a reader never sees half a file.
 */
import "reflect-metadata"
import * as x509 from "@peculiar/x509"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect } from "effect"
import * as Fsync from "../log/Fsync.ts"
import { CertificateError } from "./CertificateCheck.ts"
import type * as TlsSettings from "./TlsSettings.ts"
import { describe, errorCode } from "../log/SystemError.ts"

/** How long certificates last and when they are renewed. */
export interface SelfSignedOptions {
  /** Validity of a new certificate, in ms. Default one year. */
  readonly validity?: number
  /** Renew a certificate that expires within this many ms. Default 14 days. */
  readonly renewBefore?: number
  /** Give up waiting for another process's lock after this many ms (then take it over). Default 30 s. */
  readonly lockTimeout?: number
}

const day = 86_400_000
const defaults = { validity: 365 * day, renewBefore: 14 * day, lockTimeout: 30_000 }
const pollInterval = 25

/** The file names used in the directory. */
export const fileNames = { certificate: "selfsigned.crt", key: "selfsigned.key", lock: "selfsigned.lock" } as const

const webCrypto = globalThis.crypto

const sleep = (millis: number) => new Promise<void>((resolve) => setTimeout(resolve, millis))

/** Whether the files hold a matching, current certificate for `hostname`. */
const usable = async (files: TlsSettings.CertificateFiles, hostname: string, renewBefore: number): Promise<boolean> => {
  try {
    const [certificatePem, keyPem] = await Promise.all([
      Fs.readFile(files.certificate, "utf8"),
      Fs.readFile(files.key, "utf8")
    ])
    const certificate = new Crypto.X509Certificate(certificatePem)
    const key = Crypto.createPrivateKey(keyPem)
    return certificate.checkPrivateKey(key) &&
      certificate.validToDate.getTime() - Date.now() > renewBefore &&
      certificate.validFromDate.getTime() <= Date.now() &&
      certificate.checkHost(hostname, { wildcards: false }) !== undefined
  } catch {
    return false
  }
}

/** A fresh ECDSA P-256 key and certificate for `hostname`, "localhost" and 127.0.0.1. */
const generate = async (hostname: string, validity: number): Promise<{ certificate: string; key: string }> => {
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
  const keys = await webCrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])
  const dns = [...new Set([hostname.toLowerCase(), "localhost"])]
  const serial = Crypto.randomBytes(16)
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01
  const now = Date.now()
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString("hex"),
      name: `CN=${hostname}`,
      // An hour of slack for clients whose clock is a little behind.
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + validity),
      keys,
      signingAlgorithm: algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([
          ...dns.map((value) => ({ type: "dns" as const, value })),
          { type: "ip" as const, value: "127.0.0.1" }
        ]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webCrypto)
      ]
    },
    webCrypto
  )
  const key = Crypto.KeyObject.from(keys.privateKey).export({ type: "pkcs8", format: "pem" }).toString()
  return { certificate: certificate.toString("pem") + "\n", key }
}

/** Takes the lock file; waits while another process holds it, and takes over a stale one. */
const lock = async (file: string, timeout: number): Promise<void> => {
  const started = Date.now()
  for (;;) {
    try {
      const handle = await Fs.open(file, "wx", 0o600)
      await handle.close()
      return
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error
    }
    const age = await Fs.stat(file).then((s) => Date.now() - s.mtimeMs, () => 0)
    if (age > timeout || Date.now() - started > timeout) {
      await Fs.rm(file, { force: true })
      continue
    }
    await sleep(pollInterval)
  }
}

/**
 * The self-signed certificate and key in `directory` (created if missing) for `hostname`:
 * `selfsigned.crt` and `selfsigned.key` (PKCS#8, mode 0600), ECDSA P-256, naming `hostname`,
 * "localhost" and 127.0.0.1. Existing files are reused while they match, name the host and
 * are not within `renewBefore` of expiring.
 */
export const ensure = (
  directory: string,
  hostname: string,
  options: SelfSignedOptions = {}
): Effect.Effect<TlsSettings.CertificateFiles, CertificateError> => {
  const settings = { ...defaults, ...options }
  const files: TlsSettings.CertificateFiles = {
    certificate: Path.join(directory, fileNames.certificate),
    key: Path.join(directory, fileNames.key)
  }
  const lockFile = Path.join(directory, fileNames.lock)
  return Effect.tryPromise({
    try: async () => {
      if (await usable(files, hostname, settings.renewBefore)) return files
      await Fs.mkdir(directory, { recursive: true, mode: 0o700 })
      await lock(lockFile, settings.lockTimeout)
      try {
        // Another process may have made it while this one waited for the lock.
        if (await usable(files, hostname, settings.renewBefore)) return files
        const made = await generate(hostname, settings.validity)
        // The key goes first: a reader between the two renames sees a mismatch and waits for the lock.
        await Fsync.replaceFile(files.key, made.key, 0o600)
        await Fsync.replaceFile(files.certificate, made.certificate, 0o644)
        return files
      } finally {
        await Fs.rm(lockFile, { force: true })
      }
    },
    catch: (error) => new CertificateError({ file: directory, reason: `self-signed certificate: ${describe(error)}` })
  })
}
