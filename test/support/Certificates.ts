/**
 * A throw-away PKI for tests: a root CA, an optional intermediate, and leaf certificates with
 * the names, validity windows, key types and key file formats a test needs, written as PEM
 * files to a directory the test owns.
 *
 * ```ts
 * const pki = await Certificates.makePki(dir, {
 *   leaves: [
 *     { name: "mx", dns: ["mx.example.test"], keyType: "ecdsa" },
 *     { name: "wild", dns: ["*.example.test"], keyType: "rsa", keyFormat: "pkcs1" },
 *     { name: "old", dns: ["old.example.test"], notAfter: Certificates.daysFromNow(-1) }
 *   ]
 * })
 * pki.leaf("mx").certificateFile // <dir>/mx.crt: the leaf, then its intermediates
 * pki.ca.certificatePem          // trust anchor for clients (`ca` of tls.connect, openssl -CAfile)
 * ```
 *
 * Private keys are generated per run; nothing here is meant to look like a real key.
 */
import "reflect-metadata"
import * as x509 from "@peculiar/x509"
import * as Crypto from "node:crypto"
import type { webcrypto } from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

/** RSA-2048 or ECDSA P-256. */
export type KeyType = "rsa" | "ecdsa"

/**
 * How a private key file is written: "pkcs1" (`BEGIN RSA PRIVATE KEY`, RSA only), "sec1"
 * (`BEGIN EC PRIVATE KEY`, ECDSA only) or "pkcs8" (`BEGIN PRIVATE KEY`). With a passphrase,
 * PKCS#8 becomes `BEGIN ENCRYPTED PRIVATE KEY` and the other two legacy `Proc-Type: 4,ENCRYPTED`.
 */
export type KeyFormat = "pkcs1" | "pkcs8" | "sec1"

/** One leaf certificate to issue. */
export interface LeafSpec {
  /** File base name (`<name>.crt`, `<name>.key`) and the key of `Pki.leaf(name)`. */
  readonly name: string
  /** DNS names of the subjectAltName (wildcards allowed). */
  readonly dns?: ReadonlyArray<string>
  /** IP addresses of the subjectAltName. */
  readonly ips?: ReadonlyArray<string>
  /** Subject CN; default: the first DNS name, else `name`. */
  readonly commonName?: string
  /** Leave out the subjectAltName extension (the CN is then the only name). Default false. */
  readonly noSubjectAltName?: boolean
  /** Default "ecdsa". */
  readonly keyType?: KeyType
  /** Default "pkcs8". */
  readonly keyFormat?: KeyFormat
  /** Encrypts the key file (AES-256-CBC) with this passphrase. */
  readonly passphrase?: string
  /** Default: one hour ago. */
  readonly notBefore?: Date
  /** Default: 365 days from now. */
  readonly notAfter?: Date
  /** Signed by the intermediate (the chain file then holds leaf + intermediate). Default false. */
  readonly viaIntermediate?: boolean
  /** Adds clientAuth to the extended key usage (for client certificate tests). Default false. */
  readonly clientAuth?: boolean
  /**
   * Where revocation would be checked: a CRL distribution point and an OCSP responder (the
   * URLs are only written into the certificate; nothing serves them). Audits such as
   * testssl.sh rate a certificate without either as a HIGH finding.
   */
  readonly revocation?: { readonly crl: string; readonly ocsp: string }
}

/** A certificate authority of the test PKI. */
export interface Authority {
  readonly certificatePem: string
  readonly keyPem: string
  /** `<dir>/<ca|intermediate>.crt` */
  readonly certificateFile: string
  readonly subject: string
}

/** An issued leaf, as files and as PEM. */
export interface Leaf {
  readonly name: string
  /** PEM file: the leaf, then the intermediate when issued by it. */
  readonly certificateFile: string
  readonly keyFile: string
  /** The file's content: leaf first, then the intermediate if any. */
  readonly certificatePem: string
  /** The leaf alone. */
  readonly leafPem: string
  /** The key file's content, in its format (and encrypted when a passphrase was given). */
  readonly keyPem: string
  readonly passphrase: string | undefined
  readonly keyType: KeyType
  readonly keyFormat: KeyFormat
  readonly subject: string
  readonly dns: ReadonlyArray<string>
  readonly notAfter: Date
  /** As `node:crypto` X509Certificate reports it (colon-separated upper-case hex). */
  readonly fingerprint256: string
}

export interface PkiOptions {
  /** Key of the root CA. Default "ecdsa". */
  readonly caKeyType?: KeyType
  /** Also create an intermediate CA (needed by `viaIntermediate` leaves). Default: when a leaf asks. */
  readonly intermediate?: boolean
  readonly leaves?: ReadonlyArray<LeafSpec>
}

export interface Pki {
  readonly directory: string
  readonly ca: Authority
  readonly intermediate: Authority | undefined
  /** The leaf issued under `name`; throws when there is none (a test bug). */
  readonly leaf: (name: string) => Leaf
  /** Issues one more leaf (or replaces one of the same name, rewriting its files). */
  readonly issue: (spec: LeafSpec) => Promise<Leaf>
}

/** A date `days` from now (negative: in the past). */
export const daysFromNow = (days: number): Date => new Date(Date.now() + days * 86_400_000)

const subtle = globalThis.crypto.subtle
x509.cryptoProvider.set(globalThis.crypto)

const algorithmOf = (keyType: KeyType): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams =>
  keyType === "rsa"
    ? { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }
    : { name: "ECDSA", namedCurve: "P-256" }

const signingOf = (keyType: KeyType): webcrypto.Algorithm | webcrypto.EcdsaParams =>
  keyType === "rsa" ? { name: "RSASSA-PKCS1-v1_5" } : { name: "ECDSA", hash: "SHA-256" }

const generate = (keyType: KeyType): Promise<webcrypto.CryptoKeyPair> =>
  subtle.generateKey(algorithmOf(keyType), true, ["sign", "verify"])

/** Writes a private key in the requested file format, optionally encrypted. */
export const exportKey = (
  key: webcrypto.CryptoKey,
  keyType: KeyType,
  format: KeyFormat,
  passphrase?: string
): string => {
  if (format === "pkcs1" && keyType !== "rsa") throw new Error("PKCS#1 is an RSA key format")
  if (format === "sec1" && keyType !== "ecdsa") throw new Error("SEC1 is an EC key format")
  const keyObject = Crypto.KeyObject.from(key)
  const encryption = passphrase === undefined ? {} : { cipher: "aes-256-cbc", passphrase }
  return keyObject.export({ type: format, format: "pem", ...encryption }).toString()
}

const serial = (): string => {
  const bytes = Crypto.randomBytes(16)
  // A positive DER integer: clear the top bit, keep it non-zero.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01
  return bytes.toString("hex")
}

interface Signer {
  readonly certificate: x509.X509Certificate
  readonly keys: webcrypto.CryptoKeyPair
  readonly keyType: KeyType
}

const makeAuthority = async (
  commonName: string,
  keyType: KeyType,
  parent: Signer | undefined
): Promise<Signer> => {
  const keys = await generate(keyType)
  const notBefore = daysFromNow(-1)
  const notAfter = daysFromNow(3650)
  const extensions = [
    new x509.BasicConstraintsExtension(true, parent === undefined ? undefined : 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
  ]
  const certificate = parent === undefined
    ? await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=${commonName}`,
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: signingOf(keyType),
      extensions
    })
    : await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${commonName}`,
      issuer: parent.certificate.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parent.keys.privateKey,
      signingAlgorithm: signingOf(parent.keyType),
      extensions: [...extensions, await x509.AuthorityKeyIdentifierExtension.create(parent.keys.publicKey)]
    })
  return { certificate, keys, keyType }
}

const authorityFiles = async (directory: string, base: string, signer: Signer): Promise<Authority> => {
  const certificatePem = signer.certificate.toString("pem") + "\n"
  const keyPem = exportKey(signer.keys.privateKey, signer.keyType, "pkcs8")
  const certificateFile = Path.join(directory, `${base}.crt`)
  await Fs.writeFile(certificateFile, certificatePem)
  await Fs.writeFile(Path.join(directory, `${base}.key`), keyPem, { mode: 0o600 })
  return { certificatePem, keyPem, certificateFile, subject: signer.certificate.subject }
}

/**
 * Issues a leaf signed by `signer` and writes `<name>.crt` and `<name>.key` (mode 0600) in
 * `directory`. `chain` is appended to the certificate file after the leaf.
 */
const issueLeaf = async (
  directory: string,
  signer: Signer,
  chain: string,
  spec: LeafSpec
): Promise<Leaf> => {
  const keyType = spec.keyType ?? "ecdsa"
  const keyFormat = spec.keyFormat ?? "pkcs8"
  const dns = spec.dns ?? []
  const keys = await generate(keyType)
  const notAfter = spec.notAfter ?? daysFromNow(365)
  const commonName = spec.commonName ?? dns[0] ?? spec.name
  const names: Array<x509.JsonGeneralName> = [
    ...dns.map((value) => ({ type: "dns" as const, value })),
    ...(spec.ips ?? []).map((value) => ({ type: "ip" as const, value }))
  ]
  const usages = [x509.ExtendedKeyUsage.serverAuth, ...(spec.clientAuth === true ? [x509.ExtendedKeyUsage.clientAuth] : [])]
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${commonName}`,
    issuer: signer.certificate.subject,
    notBefore: spec.notBefore ?? new Date(Date.now() - 3_600_000),
    notAfter,
    publicKey: keys.publicKey,
    signingKey: signer.keys.privateKey,
    signingAlgorithm: signingOf(signer.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        keyType === "rsa"
          ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
          : x509.KeyUsageFlags.digitalSignature,
        true
      ),
      new x509.ExtendedKeyUsageExtension(usages),
      await x509.AuthorityKeyIdentifierExtension.create(signer.keys.publicKey),
      ...(spec.noSubjectAltName === true || names.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(names)]),
      ...(spec.revocation === undefined ? [] : [
        new x509.CRLDistributionPointsExtension([spec.revocation.crl]),
        new x509.AuthorityInfoAccessExtension({ ocsp: spec.revocation.ocsp })
      ])
    ]
  })
  const leafPem = certificate.toString("pem") + "\n"
  const certificatePem = leafPem + chain
  const keyPem = exportKey(keys.privateKey, keyType, keyFormat, spec.passphrase)
  const certificateFile = Path.join(directory, `${spec.name}.crt`)
  const keyFile = Path.join(directory, `${spec.name}.key`)
  await Fs.writeFile(certificateFile, certificatePem)
  await Fs.writeFile(keyFile, keyPem, { mode: 0o600 })
  return {
    name: spec.name,
    certificateFile,
    keyFile,
    certificatePem,
    leafPem,
    keyPem,
    passphrase: spec.passphrase,
    keyType,
    keyFormat,
    subject: certificate.subject,
    dns,
    notAfter,
    fingerprint256: new Crypto.X509Certificate(leafPem).fingerprint256
  }
}

/**
 * Creates a CA (and an intermediate when asked or needed) and the given leaves in `directory`
 * (created if missing). Files: `ca.crt`, `ca.key`, `intermediate.crt`, `intermediate.key`,
 * `<leaf>.crt` (leaf, then intermediate), `<leaf>.key`.
 */
export const makePki = async (directory: string, options: PkiOptions = {}): Promise<Pki> => {
  await Fs.mkdir(directory, { recursive: true })
  const leaves = options.leaves ?? []
  const root = await makeAuthority("Postern Test Root CA", options.caKeyType ?? "ecdsa", undefined)
  const wantsIntermediate = options.intermediate === true || leaves.some((leaf) => leaf.viaIntermediate === true)
  const middle = wantsIntermediate ? await makeAuthority("Postern Test Intermediate CA", "ecdsa", root) : undefined
  const ca = await authorityFiles(directory, "ca", root)
  const intermediate = middle === undefined ? undefined : await authorityFiles(directory, "intermediate", middle)
  const issued = new Map<string, Leaf>()
  const issue = async (spec: LeafSpec): Promise<Leaf> => {
    const viaIntermediate = spec.viaIntermediate === true
    if (viaIntermediate && (middle === undefined || intermediate === undefined)) {
      throw new Error("this PKI has no intermediate: pass `intermediate: true` to makePki")
    }
    const leaf = viaIntermediate && middle !== undefined && intermediate !== undefined
      ? await issueLeaf(directory, middle, intermediate.certificatePem, spec)
      : await issueLeaf(directory, root, "", spec)
    issued.set(spec.name, leaf)
    return leaf
  }
  for (const spec of leaves) await issue(spec)
  return {
    directory,
    ca,
    intermediate,
    issue,
    leaf: (name) => {
      const leaf = issued.get(name)
      if (leaf === undefined) throw new Error(`no leaf named ${name}`)
      return leaf
    }
  }
}
