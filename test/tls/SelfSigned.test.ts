/**
 * The embedded default's self-signed certificate: made once with the right names and key,
 * reused, made again when unusable, and safe when worker processes race for it.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as CertificateCheck from "../../src/tls/CertificateCheck.ts"
import * as SelfSigned from "../../src/tls/SelfSigned.ts"

const tempDirectory = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-selfsigned-"))),
  (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
)

const read = (file: string) => Effect.promise(() => Fs.readFile(file, "utf8"))
const day = 86_400_000

describe("SelfSigned.ensure", () => {
  it.live("makes an ECDSA P-256 certificate for the host, localhost and 127.0.0.1, valid for a year", () =>
    Effect.gen(function*() {
      const directory = Path.join(yield* tempDirectory, "var", "tls")
      const files = yield* SelfSigned.ensure(directory, "mx.example.test")
      assert.deepStrictEqual(files, {
        certificate: Path.join(directory, "selfsigned.crt"),
        key: Path.join(directory, "selfsigned.key")
      })
      const certificate = new Crypto.X509Certificate(yield* read(files.certificate))
      const key = Crypto.createPrivateKey(yield* read(files.key))
      assert.isTrue(certificate.checkPrivateKey(key))
      assert.strictEqual(key.asymmetricKeyType, "ec")
      assert.strictEqual(key.asymmetricKeyDetails?.namedCurve, "prime256v1")
      assert.strictEqual(certificate.subjectAltName, "DNS:mx.example.test, DNS:localhost, IP Address:127.0.0.1")
      assert.isTrue(certificate.verify(certificate.publicKey))
      const lifetime = certificate.validToDate.getTime() - Date.now()
      assert.isAbove(lifetime, 364 * day)
      assert.isBelow(lifetime, 366 * day)
      const keyMode = (yield* Effect.promise(() => Fs.stat(files.key))).mode & 0o777
      assert.strictEqual(keyMode, 0o600)
      // And the store's own checks accept it for the names it carries.
      yield* CertificateCheck.load(files, {
        name: "default",
        serves: ["mx.example.test", "localhost"],
        now: Date.now(),
        expiryWarning: 14 * day
      })
      const left = yield* Effect.promise(() => Fs.readdir(directory))
      assert.deepStrictEqual(left.sort(), ["selfsigned.crt", "selfsigned.key"])
    }))

  it.live("reuses the files on later calls", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const files = yield* SelfSigned.ensure(directory, "mx.example.test")
      const before = yield* read(files.certificate)
      yield* SelfSigned.ensure(directory, "MX.example.test")
      assert.strictEqual(yield* read(files.certificate), before)
    }))

  it.live("makes a new one when the files are unreadable, expiring, or name another host", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const files = yield* SelfSigned.ensure(directory, "mx.example.test")
      const first = yield* read(files.certificate)

      yield* Effect.promise(() => Fs.writeFile(files.key, "garbage"))
      yield* SelfSigned.ensure(directory, "mx.example.test")
      const second = yield* read(files.certificate)
      assert.notStrictEqual(second, first)
      assert.isTrue(new Crypto.X509Certificate(second).checkPrivateKey(Crypto.createPrivateKey(yield* read(files.key))))

      // Renewal: a certificate whose remaining life is within renewBefore is replaced.
      yield* SelfSigned.ensure(directory, "mx.example.test", { renewBefore: 400 * day })
      const third = yield* read(files.certificate)
      assert.notStrictEqual(third, second)

      yield* SelfSigned.ensure(directory, "other.example.test")
      const fourth = new Crypto.X509Certificate(yield* read(files.certificate))
      assert.include(fourth.subjectAltName, "DNS:other.example.test")
    }))

  it.live("an expired certificate is replaced", () =>
    Effect.gen(function*() {
      const directory = yield* tempDirectory
      const files = yield* SelfSigned.ensure(directory, "mx.example.test", { validity: 1 })
      yield* Effect.sleep(20)
      const expired = yield* read(files.certificate)
      assert.isBelow(new Crypto.X509Certificate(expired).validToDate.getTime(), Date.now())
      yield* SelfSigned.ensure(directory, "mx.example.test", { renewBefore: 0 })
      const renewed = new Crypto.X509Certificate(yield* read(files.certificate))
      assert.isAbove(renewed.validToDate.getTime(), Date.now() + 300 * day)
    }))

  it.live("worker processes racing on first start all end up with the same matching pair", () =>
    Effect.gen(function*() {
      const directory = Path.join(yield* tempDirectory, "tls")
      const module = Path.resolve("src/tls/SelfSigned.ts")
      const script = `
        import * as Fs from "node:fs/promises"
        import { Effect } from "effect"
        import * as SelfSigned from ${JSON.stringify(module)}
        const files = await Effect.runPromise(SelfSigned.ensure(${JSON.stringify(directory)}, "mx.example.test"))
        process.stdout.write(JSON.stringify({
          certificate: await Fs.readFile(files.certificate, "utf8"),
          key: await Fs.readFile(files.key, "utf8")
        }))
      `
      const run = () =>
        new Promise<{ certificate: string; key: string }>((resolve, reject) => {
          ChildProcess.execFile(process.execPath, ["--input-type=module", "-e", script], (error, stdout) =>
            error === null ? resolve(JSON.parse(stdout)) : reject(error))
        })
      const results = yield* Effect.promise(() => Promise.all(Array.from({ length: 4 }, run)))
      assert.strictEqual(new Set(results.map((r) => r.certificate)).size, 1)
      for (const r of results) {
        assert.isTrue(new Crypto.X509Certificate(r.certificate).checkPrivateKey(Crypto.createPrivateKey(r.key)))
      }
      const left = yield* Effect.promise(() => Fs.readdir(directory))
      assert.deepStrictEqual(left.sort(), ["selfsigned.crt", "selfsigned.key"])
    }))
})
