/**
 * DKIM signing end to end: `postern dkim keygen` makes the key and prints the record; an
 * authenticated client's message from example.test is signed; the signature verifies with two
 * independent verifiers, dkimpy (Debian's python3-dkim, with the record handed to it: no DNS) and
 * OpenDKIM's opendkim-testmsg (Debian's opendkim-tools, RSA-2048 and Ed25519 keys: it looks the
 * record up with libc's resolver, confined to a zone served on 127.53.0.1:53 by a private mount
 * namespace whose /etc/resolv.conf names only that server), and with mailauth; a message altered
 * after signing fails opendkim-testmsg; OpenDKIM's opendkim-testkey finds the published RSA record
 * and says it matches the key keygen wrote, and that another key does not (it cannot check Ed25519
 * keys at all: see there); mail from the Internet that merely claims the domain is not signed.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Users from "../../src/auth/Users.ts"
import { type Daemon, runPostern, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"
import { type DnsServer, serveZone } from "../support/DnsServer.ts"
import { dkimResults } from "../support/DnsTable.ts"

const password = "signing test passphrase"

const submitScript = String.raw`
import json, smtplib, ssl, sys
port, login, data = int(sys.argv[1]), sys.argv[2] == "login", sys.argv[3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
s.ehlo()
s.starttls(context=context)
s.ehlo()
if login:
    s.login("alice", sys.argv[4])
s.mail("alice@example.test")
s.rcpt("bob@example.test")
code, msg = s.data(data.encode())
s.quit()
print(json.dumps([code, msg.decode()]))
`

/** dkimpy's verdict on a message, with the DNS answer given instead of looked up. */
const dkimpyScript = String.raw`
import sys, dkim
record = sys.argv[1].encode()
message = open(sys.argv[2], "rb").read()
def dnsfunc(name, timeout=5):
    return record if name == b"s1._domainkey.example.test." else None
print("pass" if dkim.verify(message, dnsfunc=dnsfunc) else "fail")
`

/** Runs a program to its end, with `input` (or nothing) on its standard input. */
const run = (file: string, args: ReadonlyArray<string>, input?: string | Buffer) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = ChildProcess.execFile(file, [...args], { timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }))
    // A program that exits without reading its input makes the write fail (EPIPE): its exit code tells.
    child.stdin?.on("error", () => {}).end(input)
  })

/** A python3 that has dkimpy: the one on PATH, or Debian's (where python3-dkim installs it). */
const pythonWithDkim = async (): Promise<string> => {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    if ((await run(candidate, ["-c", "import dkim"])).code === 0) return candidate
  }
  throw new Error("no python3 with the dkim module (Debian package python3-dkim; .ci/run installs it)")
}

/** An OpenDKIM tool: Debian installs them in /usr/sbin, which a non-login shell's PATH may lack. */
const opendkimTool = (name: "opendkim-testmsg" | "opendkim-testkey"): string => {
  const dirs = ["/usr/sbin", ...(process.env["PATH"] ?? "").split(":").filter((d) => d !== "")]
  for (const file of dirs.map((d) => Path.join(d, name))) {
    try {
      Fs.accessSync(file, Fs.constants.X_OK)
      return file
    } catch {
      // Not here.
    }
  }
  throw new Error(`${name} is neither in /usr/sbin nor on PATH (Debian package opendkim-tools; .ci/run installs it)`)
}

/** The server of the test zone: a loopback address no other test file uses, at the port libc asks. */
const dnsHost = "127.53.0.1"

/**
 * The files that confine an OpenDKIM tool's DNS to the test zone. opendkim-testmsg asks libc's
 * resolver: `resolvConf` replaces /etc/resolv.conf in a private mount namespace (root only,
 * TESTING.md). opendkim-testkey asks libunbound instead, which ignores resolv.conf and by itself
 * would recurse from the root servers (and answers every name under test. NXDOMAIN itself, RFC
 * 6761): `opendkimConf` gives it the unbound configuration `unboundConf`, which forwards every
 * name to the test zone's server only (forward-first is off: no fallback to recursion), sends from
 * that loopback address (the kernel refuses to route a loopback source anywhere else), over IPv4.
 */
interface ConfinedDns {
  readonly dir: string
  readonly resolvConf: string
  readonly opendkimConf: string
}

const confineDns = (): ConfinedDns => {
  const dir = Fs.mkdtempSync(Path.join(Fs.realpathSync("/tmp"), "postern-resolv-"))
  const resolvConf = Path.join(dir, "resolv.conf")
  Fs.writeFileSync(resolvConf, `nameserver ${dnsHost}\noptions timeout:2 attempts:2\n`)
  const unboundConf = Path.join(dir, "unbound.conf")
  Fs.writeFileSync(unboundConf, [
    "server:",
    "  do-ip6: no",
    "  do-not-query-localhost: no",
    `  outgoing-interface: ${dnsHost}`,
    "  qname-minimisation: no",
    '  local-zone: "test." nodefault',
    "forward-zone:",
    '  name: "."',
    `  forward-addr: ${dnsHost}@53`,
    ""
  ].join("\n"))
  // Given with -x, this file also keeps the tool from reading /etc/opendkim.conf.
  const opendkimConf = Path.join(dir, "opendkim.conf")
  Fs.writeFileSync(opendkimConf, `ResolverConfiguration ${unboundConf}\n`)
  return { dir, resolvConf, opendkimConf }
}

/** Runs an OpenDKIM tool in a private mount namespace (root only) in which `resolvConf` replaces /etc/resolv.conf. */
const runConfined = (dns: ConfinedDns, tool: "opendkim-testmsg" | "opendkim-testkey", args: ReadonlyArray<string>, input?: string) =>
  run("unshare", ["-m", "--", "bash", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', dns.resolvConf, opendkimTool(tool), ...args], input)

/** opendkim-testmsg's verdict on `message` (code 0 and no output: every signature verified). */
const opendkimVerify = (dns: ConfinedDns, message: string) => runConfined(dns, "opendkim-testmsg", [], message)

/** opendkim-testkey's verdict on `keyFile` against the record published for `selector`, most verbose (-vvv: it says "key OK"). */
const opendkimTestkey = (dns: ConfinedDns, selector: string, keyFile: string) =>
  runConfined(dns, "opendkim-testkey", ["-x", dns.opendkimConf, "-d", "example.test", "-s", selector, "-k", keyFile, "-vvv"])

/** A key made by `postern dkim keygen` for example.test, and a daemon that signs alice's mail with it. */
interface Signer {
  readonly selector: string
  readonly keyFile: string
  /** The TXT record keygen printed, its strings joined. */
  readonly record: string
  readonly daemon: Daemon
}

/** Runs `postern dkim keygen` into a directory of its own; the caller removes the key file's directory. */
const keygen = async (selector: string, algorithm: "rsa" | "ed25519") => {
  const keys = Fs.mkdtempSync(Path.join(Fs.realpathSync("/tmp"), "postern-dkim-"))
  const generated = await runPostern(["dkim", "keygen", "--domain", "example.test", "--selector", selector, "--algorithm", algorithm, "--out", keys])
  assert.strictEqual(generated.code, 0, generated.stderr)
  const keyFile = Path.join(keys, `example.test.${selector}.key`)
  // The record is printed as zone-file strings of at most 255 characters: join them.
  const line = generated.stdout.split("\n").find((l) => l.startsWith(`${selector}._domainkey.example.test. IN TXT `)) ?? ""
  const record = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? "").join("")
  return { keyFile, record }
}

/**
 * A daemon signing alice's mail with a fresh key: as it streams in (`dkim.sign`), or by the
 * dkimSign rule once the message is queued (postq).
 */
const startSigner = async (selector: string, algorithm: "rsa" | "ed25519", how: "streaming" | "postq rule" = "streaming"): Promise<Signer> => {
  const { keyFile, record } = await keygen(selector, algorithm)
  const daemon = await startDaemon(
    how === "streaming"
      ? { dkim: { sign: [{ domain: "example.test", selector, key: keyFile }] } }
      : { policySource: `{ rules: { postq: [dkimSign({ domain: "example.test", selector: ${JSON.stringify(selector)}, key: ${JSON.stringify(keyFile)} })] } }` }
  )
  await Users.addUser(Path.join(daemon.stateDir, "users"), "alice", password)
  return { selector, keyFile, record, daemon }
}

/**
 * Submits a message from alice, authenticated, and returns it as delivered to bob. It has a Date
 * field: opendkim-testmsg refuses a message without one (RFC 5322 requires it) before it looks
 * at any signature.
 */
const submitSigned = async (daemon: Daemon, token: string) => {
  const date = new Date().toUTCString().replace("GMT", "+0000")
  const message = `From: alice@example.test\r\nTo: bob@example.test\r\nDate: ${date}\r\nSubject: ${token}\r\n\r\nSigned ${token}\r\n`
  const sent = await run("python3", ["-c", submitScript, String(daemon.ports.submission), "login", message, password])
  assert.strictEqual(sent.code, 0, sent.stderr)
  return waitForMail(daemon, "example.test", "bob", token)
}

describe("DKIM signing of mail from our own domains", () => {
  let rsa: Signer
  let ed: Signer
  let postq: Signer

  beforeAll(async () => {
    const signers = await Promise.all([startSigner("s1", "rsa"), startSigner("ed", "ed25519"), startSigner("p1", "rsa", "postq rule")])
    ;[rsa, ed, postq] = signers
  })

  afterAll(async () => {
    await Promise.all([rsa, ed, postq].map((signer) => signer?.daemon.dispose()))
    for (const signer of [rsa, ed, postq]) if (signer !== undefined) Fs.rmSync(Path.dirname(signer.keyFile), { recursive: true, force: true })
  })

  it("keygen writes the key (mode 0600) and prints the TXT record to publish", () => {
    assert.strictEqual(Fs.statSync(rsa.keyFile).mode & 0o777, 0o600)
    assert.match(rsa.record, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/)
  })

  it("an authenticated client's message is signed, and the signature verifies with dkimpy and with mailauth", async () => {
    const delivered = await submitSigned(rsa.daemon, uniqueToken("dkim-signed"))
    assert.match(delivered.text, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/)
    const verdict = await run(await pythonWithDkim(), ["-c", dkimpyScript, rsa.record, delivered.file])
    assert.strictEqual(verdict.stdout.trim(), "pass", verdict.stderr)
    const results = await dkimResults(Fs.readFileSync(delivered.file), "s1._domainkey.example.test", rsa.record, "alice@example.test")
    assert.deepStrictEqual(results, [{ domain: "example.test", selector: "s1", result: "pass" }])
  })

  it("a message that only claims example.test, from a client that did not authenticate, is not signed", async () => {
    const token = uniqueToken("dkim-unsigned")
    const message = `From: alice@example.test\r\nSubject: ${token}\r\n\r\n${token}\r\n`
    const sent = await run("python3", ["-c", submitScript, String(rsa.daemon.ports.smtp), "anonymous", message])
    assert.strictEqual(sent.code, 0, sent.stderr)
    const delivered = await waitForMail(rsa.daemon, "example.test", "bob", token)
    assert.notInclude(delivered.text, "DKIM-Signature:")
  })

  it("keygen for Ed25519 writes the key (mode 0600) and prints a k=ed25519 record of the 32-byte key", () => {
    assert.strictEqual(Fs.statSync(ed.keyFile).mode & 0o777, 0o600)
    const p = /^v=DKIM1; k=ed25519; p=([A-Za-z0-9+/=]+)$/.exec(ed.record)?.[1] ?? ""
    assert.strictEqual(Buffer.from(p, "base64").length, 32)
  })

  describe("checked by OpenDKIM's opendkim-testmsg and opendkim-testkey, the record looked up in the test zone", () => {
    let dns: DnsServer
    let confined: ConfinedDns

    beforeAll(async () => {
      assert.strictEqual(process.getuid?.(), 0, "OpenDKIM's DNS is confined by a mount namespace and a server on port 53: run as root (TESTING.md)")
      dns = await serveZone(
        {
          "s1._domainkey.example.test": { TXT: [rsa.record] },
          "ed._domainkey.example.test": { TXT: [ed.record] },
          "p1._domainkey.example.test": { TXT: [postq.record] }
        },
        { host: dnsHost, port: 53 }
      )
      confined = confineDns()
    })

    afterAll(async () => {
      await dns?.close()
      if (confined !== undefined) Fs.rmSync(confined.dir, { recursive: true, force: true })
    })

    /** The questions the test zone's server gets while `f` runs. */
    const asked = async <A>(f: () => Promise<A>) => {
      const before = dns.questions.length
      const result = await f()
      return { result, questions: dns.questions.slice(before) }
    }

    it.each([
      { name: "RSA-2048", algorithm: "rsa-sha256", signer: () => rsa },
      { name: "Ed25519", algorithm: "ed25519-sha256", signer: () => ed },
      { name: "RSA-2048 by the dkimSign rule at postq (one unfolded line)", algorithm: "rsa-sha256", signer: () => postq }
    ])("$name: the signature verifies, and fails once a body byte is changed", async ({ algorithm, signer }) => {
      const { daemon, selector } = signer()
      const token = uniqueToken(`dkim-opendkim-${selector}`)
      const delivered = await submitSigned(daemon, token)
      const field = /^DKIM-Signature: .*(?:\r\n[ \t].*)*/.exec(delivered.text)?.[0].replace(/\r\n[ \t]+/g, " ") ?? ""
      assert.match(field, new RegExp(`^DKIM-Signature: v=1; a=${algorithm}; c=relaxed/relaxed; d=example\\.test; .* s=${selector};`))
      const verdict = await opendkimVerify(confined, delivered.text)
      assert.deepStrictEqual(verdict, { code: 0, stdout: "", stderr: "" })
      // The key came from the test zone: its server was asked.
      assert.deepInclude(dns.questions, { name: `${selector}._domainkey.example.test`, type: "TXT" })
      const altered = delivered.text.replace(`Signed ${token}`, `signed ${token}`)
      assert.notStrictEqual(altered, delivered.text)
      const refused = await opendkimVerify(confined, altered)
      assert.notStrictEqual(refused.code, 0)
      assert.include(refused.stderr, "dkim_eom(): Bad signature")
    })

    it("RSA-2048: opendkim-testkey finds the published record and says it matches the key keygen wrote", async () => {
      const { result, questions } = await asked(() => opendkimTestkey(confined, rsa.selector, rsa.keyFile))
      // "key not secure": the test zone is not signed (no DNSSEC), as expected. No "unsafe
      // permissions" warning: keygen wrote the key 0600.
      assert.deepStrictEqual(result, {
        code: 0,
        stdout: "opendkim-testkey: key OK\n",
        stderr: [
          `opendkim-testkey: key loaded from ${rsa.keyFile}`,
          "opendkim-testkey: checking key 's1._domainkey.example.test'",
          "opendkim-testkey: key not secure",
          ""
        ].join("\n")
      })
      assert.deepStrictEqual(questions, [{ name: "s1._domainkey.example.test", type: "TXT" }])
    })

    it("RSA-2048: opendkim-testkey says another key does not match the published record", async () => {
      const other = await keygen("s1", "rsa")
      try {
        const { result, questions } = await asked(() => opendkimTestkey(confined, rsa.selector, other.keyFile))
        assert.notStrictEqual(other.record, rsa.record)
        assert.strictEqual(result.code, 65, result.stderr) // EX_DATAERR
        assert.strictEqual(result.stdout, "opendkim-testkey: keys do not match\n")
        assert.deepStrictEqual(questions, [{ name: "s1._domainkey.example.test", type: "TXT" }])
      } finally {
        Fs.rmSync(Path.dirname(other.keyFile), { recursive: true, force: true })
      }
    })

    /*
     * opendkim-testkey 2.11 cannot check an Ed25519 key at all: libopendkim's dkim_test_key()
     * fetches and parses the record (k=ed25519 is accepted), then reads every private key as RSA
     * (EVP_PKEY_get1_RSA) to compare it with the record, so it fails with "expecting an rsa key"
     * and EX_UNAVAILABLE (69), whatever the key. This asserts that behaviour as it is, to notice
     * if a newer OpenDKIM starts checking Ed25519 keys. The Ed25519 key and its record are shown to
     * belong together elsewhere: opendkim-testmsg verifies the signature made with the key against
     * the record served here, and keygen's test checks the record holds the 32-byte public key.
     */
    it("Ed25519: opendkim-testkey finds the published record but cannot compare an Ed25519 key (it reads every key as RSA)", async () => {
      const { result, questions } = await asked(() => opendkimTestkey(confined, ed.selector, ed.keyFile))
      assert.strictEqual(result.code, 69, result.stderr) // EX_UNAVAILABLE
      assert.strictEqual(result.stdout, "")
      assert.include(result.stderr, "opendkim-testkey: key not secure\n") // Said only once the record was found and parsed.
      assert.include(result.stderr, "opendkim-testkey: EVP_PKEY_get1_RSA() failed\n")
      assert.include(result.stderr, "expecting an rsa key")
      assert.notInclude(result.stderr, "record not found")
      assert.deepStrictEqual(questions, [{ name: "ed._domainkey.example.test", type: "TXT" }])
    })
  })
})
