/**
 * Certificate checks: every key format with and without a passphrase, and each problem an
 * administrator must hear about (mismatched key, chain out of order, expired, not yet valid,
 * names not covered, unreadable files), with the file it names.
 */
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as CertificateCheck from "../../src/tls/CertificateCheck.ts"
import type * as TlsSettings from "../../src/tls/TlsSettings.ts"
import * as Certificates from "../support/Certificates.ts"

const day = 86_400_000
let directory = ""
let pki: Certificates.Pki

beforeAll(async () => {
  directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-certcheck-"))
  pki = await Certificates.makePki(directory, {
    intermediate: true,
    leaves: [
      { name: "rsa-pkcs1", dns: ["mx.example.test"], keyType: "rsa", keyFormat: "pkcs1" },
      { name: "rsa-pkcs8", dns: ["mx.example.test"], keyType: "rsa", keyFormat: "pkcs8" },
      { name: "ec-sec1", dns: ["mx.example.test"], keyType: "ecdsa", keyFormat: "sec1" },
      { name: "ec-pkcs8", dns: ["mx.example.test"], keyType: "ecdsa", keyFormat: "pkcs8" },
      { name: "rsa-pkcs1-enc", dns: ["mx.example.test"], keyType: "rsa", keyFormat: "pkcs1", passphrase: "s3cret" },
      { name: "rsa-pkcs8-enc", dns: ["mx.example.test"], keyType: "rsa", keyFormat: "pkcs8", passphrase: "s3cret" },
      { name: "ec-sec1-enc", dns: ["mx.example.test"], keyType: "ecdsa", keyFormat: "sec1", passphrase: "s3cret" },
      { name: "ec-pkcs8-enc", dns: ["mx.example.test"], keyType: "ecdsa", keyFormat: "pkcs8", passphrase: "s3cret" },
      { name: "chained", dns: ["mx.example.test"], viaIntermediate: true },
      { name: "expired", dns: ["mx.example.test"], notBefore: Certificates.daysFromNow(-30), notAfter: Certificates.daysFromNow(-1) },
      { name: "future", dns: ["mx.example.test"], notBefore: Certificates.daysFromNow(2), notAfter: Certificates.daysFromNow(30) },
      { name: "expiring", dns: ["mx.example.test"], notAfter: Certificates.daysFromNow(5) },
      { name: "wildcard", dns: ["*.example.test", "example.test"] },
      { name: "cn-only", commonName: "legacy.example.test", noSubjectAltName: true },
      { name: "other", dns: ["other.example.test"] }
    ]
  })
})

afterAll(async () => {
  await Fs.rm(directory, { recursive: true, force: true })
})

const filesOf = (leaf: Certificates.Leaf, passphrase?: string): TlsSettings.CertificateFiles => ({
  certificate: leaf.certificateFile,
  key: leaf.keyFile,
  ...(passphrase === undefined ? {} : { passphrase })
})

const options = (serves: ReadonlyArray<string> = ["mx.example.test"]): CertificateCheck.CheckOptions => ({
  name: "mx.example.test",
  serves,
  now: Date.now(),
  expiryWarning: 14 * day
})

/** The error of a load that must fail (a load that succeeds fails the test). */
const failure = (files: TlsSettings.CertificateFiles, opts = options()) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(CertificateCheck.load(files, opts))
    assert.instanceOf(error, CertificateCheck.CertificateError)
    assert.include(error.message, error.file)
    return error
  })

describe("CertificateCheck.load", () => {
  for (const name of ["rsa-pkcs1", "rsa-pkcs8", "ec-sec1", "ec-pkcs8"]) {
    it.effect(`reads a ${name} key and its certificate`, () =>
      Effect.gen(function*() {
        const leaf = pki.leaf(name)
        const loaded = yield* CertificateCheck.load(filesOf(leaf), options())
        assert.strictEqual(loaded.name, "mx.example.test")
        assert.deepStrictEqual(loaded.names, ["mx.example.test"])
        assert.strictEqual(loaded.subject, "CN=mx.example.test")
        assert.strictEqual(loaded.fingerprint256, leaf.fingerprint256)
        assert.strictEqual(loaded.notAfter, Math.floor(leaf.notAfter.getTime() / 1000) * 1000)
        assert.isFalse(loaded.expiring)
        assert.deepStrictEqual(loaded.warnings, [])
        assert.strictEqual(loaded.pem.key, leaf.keyPem)
        assert.strictEqual(loaded.pem.cert, leaf.certificatePem)
      }))
  }

  it.effect("the key files are in the formats they claim", () =>
    Effect.sync(() => {
      assert.include(pki.leaf("rsa-pkcs1").keyPem, "BEGIN RSA PRIVATE KEY")
      assert.include(pki.leaf("ec-sec1").keyPem, "BEGIN EC PRIVATE KEY")
      assert.include(pki.leaf("ec-pkcs8").keyPem, "BEGIN PRIVATE KEY")
      assert.include(pki.leaf("rsa-pkcs8-enc").keyPem, "BEGIN ENCRYPTED PRIVATE KEY")
      assert.include(pki.leaf("rsa-pkcs1-enc").keyPem, "Proc-Type: 4,ENCRYPTED")
      assert.include(pki.leaf("ec-sec1-enc").keyPem, "Proc-Type: 4,ENCRYPTED")
    }))

  for (const name of ["rsa-pkcs1-enc", "rsa-pkcs8-enc", "ec-sec1-enc", "ec-pkcs8-enc"]) {
    it.effect(`${name}: the right passphrase opens it`, () =>
      Effect.gen(function*() {
        const loaded = yield* CertificateCheck.load(filesOf(pki.leaf(name), "s3cret"), options())
        assert.strictEqual(loaded.fingerprint256, pki.leaf(name).fingerprint256)
      }))

    it.effect(`${name}: a wrong passphrase is an error naming the key file`, () =>
      Effect.gen(function*() {
        const leaf = pki.leaf(name)
        const error = yield* failure(filesOf(leaf, "wrong"))
        assert.strictEqual(error.file, leaf.keyFile)
        assert.include(error.reason, "passphrase")
      }))

    it.effect(`${name}: no passphrase is an error naming the key file`, () =>
      Effect.gen(function*() {
        const leaf = pki.leaf(name)
        const error = yield* failure(filesOf(leaf))
        assert.strictEqual(error.file, leaf.keyFile)
        assert.include(error.reason, "encrypted and no passphrase")
      }))
  }

  it.effect("a key that belongs to another certificate is an error naming the key file", () =>
    Effect.gen(function*() {
      const files = { certificate: pki.leaf("ec-pkcs8").certificateFile, key: pki.leaf("other").keyFile }
      const error = yield* failure(files)
      assert.strictEqual(error.file, files.key)
      assert.include(error.reason, "does not match")
      assert.include(error.reason, files.certificate)
    }))

  it.effect("a chain in order (leaf, intermediate) is accepted", () =>
    Effect.gen(function*() {
      const loaded = yield* CertificateCheck.load(filesOf(pki.leaf("chained")), options())
      assert.strictEqual(loaded.fingerprint256, pki.leaf("chained").fingerprint256)
    }))

  it.effect("a chain with the intermediate first is an error naming the certificate file", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("chained")
      const certificate = Path.join(directory, "reversed.crt")
      yield* Effect.promise(() => Fs.writeFile(certificate, (pki.intermediate?.certificatePem ?? "") + leaf.leafPem))
      const error = yield* failure({ certificate, key: leaf.keyFile })
      assert.strictEqual(error.file, certificate)
      assert.include(error.reason, "out of order")
    }))

  it.effect("a chain whose next certificate is not the issuer is an error naming the certificate file", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("chained")
      const certificate = Path.join(directory, "skipped.crt")
      // Leaf, then the root: the intermediate that issued the leaf is missing.
      yield* Effect.promise(() => Fs.writeFile(certificate, leaf.leafPem + pki.ca.certificatePem))
      const error = yield* failure({ certificate, key: leaf.keyFile })
      assert.strictEqual(error.file, certificate)
      assert.include(error.reason, "is not issued by certificate 2")
    }))

  it.effect("an expired certificate is an error naming its file", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("expired")
      const error = yield* failure(filesOf(leaf))
      assert.strictEqual(error.file, leaf.certificateFile)
      assert.include(error.reason, "expired on")
    }))

  it.effect("a certificate not yet valid is an error naming its file", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("future")
      const error = yield* failure(filesOf(leaf))
      assert.strictEqual(error.file, leaf.certificateFile)
      assert.include(error.reason, "not valid before")
    }))

  it.effect("a certificate expiring within the warning window loads with a warning", () =>
    Effect.gen(function*() {
      const loaded = yield* CertificateCheck.load(filesOf(pki.leaf("expiring")), options())
      assert.isTrue(loaded.expiring)
      assert.strictEqual(loaded.warnings.length, 1)
      assert.match(loaded.warnings[0] ?? "", /expires on .* in [45] days/)
      const relaxed = yield* CertificateCheck.load(filesOf(pki.leaf("expiring")), { ...options(), expiryWarning: 2 * day })
      assert.isFalse(relaxed.expiring)
      assert.deepStrictEqual(relaxed.warnings, [])
    }))

  it.effect("validity is judged at the given time", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("ec-pkcs8")
      const error = yield* failure(filesOf(leaf), { ...options(), now: leaf.notAfter.getTime() + day })
      assert.include(error.reason, "expired")
    }))

  it.effect("a configured name the certificate does not cover is an error naming the file and the name", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("ec-pkcs8")
      const error = yield* failure(filesOf(leaf), options(["mx.example.test", "smtp.example.test"]))
      assert.strictEqual(error.file, leaf.certificateFile)
      assert.include(error.reason, "does not cover smtp.example.test")
      assert.notInclude(error.reason, "cover mx.example.test")
    }))

  it.effect("a wildcard certificate covers names one label down, and the configured wildcard itself", () =>
    Effect.gen(function*() {
      const files = filesOf(pki.leaf("wildcard"))
      yield* CertificateCheck.load(files, options(["mx.example.test", "*.example.test", "example.test"]))
      const deeper = yield* failure(files, options(["a.b.example.test"]))
      assert.include(deeper.reason, "does not cover a.b.example.test")
    }))

  it.effect("a configured wildcard needs a wildcard certificate", () =>
    Effect.gen(function*() {
      const error = yield* failure(filesOf(pki.leaf("ec-pkcs8")), options(["*.example.test"]))
      assert.include(error.reason, "does not cover *.example.test")
    }))

  it.effect("without a subjectAltName the CN is the certificate's name", () =>
    Effect.gen(function*() {
      const files = filesOf(pki.leaf("cn-only"))
      const loaded = yield* CertificateCheck.load(files, options(["legacy.example.test"]))
      assert.deepStrictEqual(loaded.names, ["legacy.example.test"])
      yield* failure(files, options(["mx.example.test"]))
    }))

  it.effect("a missing file is an error naming it", () =>
    Effect.gen(function*() {
      const certificate = Path.join(directory, "missing.crt")
      const error = yield* failure({ certificate, key: pki.leaf("ec-pkcs8").keyFile })
      assert.strictEqual(error.file, certificate)
      assert.include(error.reason, "cannot be read")
    }))

  it.effect("a file without a certificate, and a key file without a key, are errors naming them", () =>
    Effect.gen(function*() {
      const garbage = Path.join(directory, "garbage.pem")
      yield* Effect.promise(() => Fs.writeFile(garbage, "not a certificate\n"))
      const noCertificate = yield* failure({ certificate: garbage, key: pki.leaf("ec-pkcs8").keyFile })
      assert.strictEqual(noCertificate.file, garbage)
      assert.include(noCertificate.reason, "no PEM certificate")
      const noKey = yield* failure({ certificate: pki.leaf("ec-pkcs8").certificateFile, key: garbage })
      assert.strictEqual(noKey.file, garbage)
      assert.include(noKey.reason, "not a readable private key")
    }))
})

describe("CertificateCheck.loadAuthorities", () => {
  it.effect("reads a CA file and refuses a file without certificates", () =>
    Effect.gen(function*() {
      const pem = yield* CertificateCheck.loadAuthorities(pki.ca.certificateFile)
      assert.strictEqual(pem, pki.ca.certificatePem)
      const error = yield* Effect.flip(CertificateCheck.loadAuthorities(pki.leaf("ec-pkcs8").keyFile))
      assert.strictEqual(error.file, pki.leaf("ec-pkcs8").keyFile)
    }))
})
