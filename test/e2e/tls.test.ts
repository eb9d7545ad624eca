/**
 * TLS against the running daemon with the clients administrators use (issue 3, "Verification
 * with real clients"): `openssl s_client`, Python's `ssl` and `smtplib`, and swaks. Certificates
 * by SNI, protocol versions on every TLS port, deliveries and their Received header, plaintext
 * injected after STARTTLS, stalled handshakes, a ClientHello on a plaintext port, the security
 * levels of RFC 3207, session resumption across workers, client certificates, and the replay of
 * TLS sessions. Each case checks the event log as well as what the client saw.
 *
 * Nothing leaves loopback: clients connect to 127.0.0.1 and are given every name they would
 * otherwise look up (Python's and swaks' own host name included).
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import type * as Event from "../../src/log/Event.ts"
import * as Certificates from "../support/Certificates.ts"
import * as ClientHello from "../support/ClientHello.ts"
import {
  assertStillDelivers,
  type Daemon,
  readMailbox,
  sleep,
  startDaemon,
  uniqueToken,
  waitForMail
} from "../support/Daemon.ts"
import { describeReply, type SmtpReply, SmtpClient } from "../support/SmtpClient.ts"

/** An external tool did not run, did not finish, or printed something unexpected. */
class ToolError extends Schema.TaggedError<ToolError>()("ToolError", {
  message: Schema.String
}) {}

/** The handshake timeout of the first daemon: short, so that stalled handshakes end quickly. */
const handshakeTimeout = 1000

// ---------------------------------------------------------------------------------------------
// Running tools

interface ToolRun {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

const run = (command: string, args: ReadonlyArray<string>, input = "", timeout = 15_000): Promise<ToolRun> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new ToolError({ message: `${command} ${args.join(" ")} did not finish within ${timeout} ms\n${stdout}\n${stderr}` }))
    }, timeout)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(new ToolError({ message: `${command}: ${error.message}` }))
    })
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
    // A tool that exits before reading its input must not fail the test with EPIPE.
    child.stdin.on("error", () => undefined)
    child.stdin.end(input)
  })

const onPath = (name: string): string => {
  for (const directory of (process.env["PATH"] ?? "").split(Path.delimiter)) {
    const candidate = Path.join(directory, name)
    if (directory !== "" && Fs.existsSync(candidate)) return candidate
  }
  throw new ToolError({ message: `${name} is not installed (not found on PATH)` })
}

type ProtocolFlag = "-tls1" | "-tls1_1" | "-tls1_2" | "-tls1_3"

interface SClientOptions {
  readonly port: number
  readonly starttls: boolean
  /** The SNI to send; undefined sends none (`-noservername`). */
  readonly servername: string | undefined
  readonly ca: string
  /** Also check that the certificate is valid for this name. */
  readonly verifyHostname?: string
  readonly protocol?: ProtocolFlag
  readonly certificate?: { readonly file: string; readonly key: string }
}

/** `openssl s_client` verifying against the test CA; `output` is stdout and stderr together. */
const sClient = async (options: SClientOptions): Promise<ToolRun & { readonly output: string }> => {
  const legacy = options.protocol === "-tls1" || options.protocol === "-tls1_1"
  const args = [
    "s_client",
    ...(options.starttls ? ["-starttls", "smtp", "-name", "client.test"] : []),
    "-connect",
    `127.0.0.1:${options.port}`,
    ...(options.servername === undefined ? ["-noservername"] : ["-servername", options.servername]),
    "-CAfile",
    options.ca,
    "-verify_return_error",
    ...(options.verifyHostname === undefined ? [] : ["-verify_hostname", options.verifyHostname]),
    ...(options.protocol === undefined ? [] : [options.protocol]),
    // OpenSSL 3 refuses TLS 1.0 and 1.1 itself at its default security level: lowered, so that
    // the refusal seen is the server's.
    ...(legacy ? ["-cipher", "DEFAULT@SECLEVEL=0"] : []),
    ...(options.certificate === undefined ? [] : ["-cert", options.certificate.file, "-key", options.certificate.key]),
    "-showcerts",
    "-crlf"
  ]
  const result = await run("openssl", args, "QUIT\n")
  return { ...result, output: `${result.stdout}\n${result.stderr}` }
}

/** The certificates a `-showcerts` run printed, in the order the server sent them. */
const certificatesIn = (output: string): Array<Crypto.X509Certificate> =>
  [...output.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) =>
    new Crypto.X509Certificate(m[0])
  )

/**
 * The Python side: smtplib and ssl against loopback, with the TLS name set by hand (SNI and
 * hostname check) and the client's own name given, so that nothing is looked up. One JSON
 * argument in, one JSON line out.
 */
const pythonHelper = String.raw`
import json, smtplib, socket, ssl, sys

spec = json.loads(sys.argv[1])
HOST = "127.0.0.1"
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def context():
    ctx = ssl.create_default_context(cafile=spec["ca"])
    version = spec.get("version")
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    if spec.get("cert") is not None:
        ctx.load_cert_chain(spec["cert"], spec["key"])
    return ctx


class Lines:
    """SMTP replies from a socket, never reading past the end of the last one."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise EOFError("closed after %r" % self.buffer)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] == b" ":
                return lines

    def request(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()


def smtp(cls, **kw):
    client = cls(local_hostname="client.test", timeout=10, **kw)
    # The name TLS sends (SNI) and checks, while the connection goes to loopback.
    client._host = spec["servername"]
    client.connect(HOST, spec["port"])
    return client


def facts(sock):
    return {"version": sock.version(), "cipher": sock.cipher()[0], "localPort": sock.getsockname()[1]}


def reply(pair):
    return [pair[0], pair[1].decode()]


op = spec["op"]
if op == "session":
    if spec["mode"] == "implicit":
        client = smtp(smtplib.SMTP_SSL, context=context())
    else:
        client = smtp(smtplib.SMTP)
        client.starttls(context=context())
    client.ehlo()
    out = facts(client.sock)
    if spec.get("message") is not None:
        out["refused"] = client.sendmail(spec["from"], spec["to"], spec["message"].encode())
    client.quit()
elif op == "levels":
    client = smtp(smtplib.SMTP)
    out = {"ehlo": reply(client.ehlo()), "offered": client.has_extn("starttls")}
    if out["offered"]:
        out["mail"] = reply(client.docmd("MAIL", "FROM:<sender@client.test>"))
        out["starttlsWithArgument"] = reply(client.docmd("STARTTLS", "now"))
        out["starttls"] = reply(client.starttls(context=context()))
        out["mailWithoutEhlo"] = reply(client.docmd("MAIL", "FROM:<sender@client.test>"))
        out["ehloInTls"] = reply(client.ehlo())
        out["offeredInTls"] = client.has_extn("starttls")
        out["starttlsAgain"] = reply(client.docmd("STARTTLS"))
        out["mailInTls"] = reply(client.docmd("MAIL", "FROM:<sender@client.test>"))
    else:
        out["starttls"] = reply(client.docmd("STARTTLS"))
        out["mail"] = reply(client.docmd("MAIL", "FROM:<sender@client.test>"))
    client.quit()
elif op == "inject":
    sock = socket.create_connection((HOST, spec["port"]), timeout=5)
    plain = Lines(sock)
    out = {"localPort": sock.getsockname()[1], "greeting": plain.reply(), "ehlo": plain.request("EHLO client.test")}
    # STARTTLS and a pipelined NOOP in one segment: the NOOP must never be answered inside TLS.
    sock.sendall(b"STARTTLS\r\nNOOP\r\n")
    out["starttls"] = plain.reply()
    tls = context().wrap_socket(sock, server_hostname=spec["servername"])
    secure = Lines(tls)
    out["version"] = tls.version()
    tls.sendall(b"EHLO client.test\r\n")
    out["replies"] = [secure.reply()]
    out["replies"].append(secure.request("NOOP"))
    out["replies"].append(secure.request("QUIT"))
    rest = secure.buffer
    while True:
        chunk = tls.recv(4096)
        if not chunk:
            break
        rest += chunk
    out["rest"] = rest.decode("latin1")
elif op == "hello-on-plaintext":
    # A TLS client that believes the port speaks TLS: its ClientHello goes out first, and
    # whatever the server sends back is kept as raw bytes before the handshake gives up.
    sock = socket.create_connection((HOST, spec["port"]), timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context().wrap_bio(incoming, outgoing, server_hostname=spec["servername"])
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    sock.sendall(hello)
    raw = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        raw += chunk
    incoming.write(raw)
    try:
        tls.do_handshake()
        error = None
    except ssl.SSLError as e:
        error = str(e)
    out = {"localPort": sock.getsockname()[1], "helloBytes": len(hello), "raw": raw.decode("latin1"), "handshakeError": error}
elif op == "resume":
    ctx = context()
    results = []
    session = None
    for _ in range(spec["connections"]):
        sock = socket.create_connection((HOST, spec["port"]), timeout=5)
        if spec["mode"] == "implicit":
            tls = ctx.wrap_socket(sock, server_hostname=spec["servername"], session=session)
            lines = Lines(tls)
            lines.reply()
        else:
            plain = Lines(sock)
            plain.reply()
            plain.request("EHLO client.test")
            plain.request("STARTTLS")
            tls = ctx.wrap_socket(sock, server_hostname=spec["servername"], session=session)
            lines = Lines(tls)
        lines.request("EHLO client.test")
        lines.request("QUIT")
        results.append({"reused": tls.session_reused, "localPort": tls.getsockname()[1], "version": tls.version()})
        # A TLS 1.3 ticket comes after the handshake: the session is taken once replies were read.
        session = tls.session
        tls.close()
    out = {"connections": results}
else:
    raise SystemExit("unknown op " + op)
print(json.dumps(out))
`

type PythonOutput = Record<string, unknown>

const pythonRunner = (script: string) => async (spec: Record<string, unknown>): Promise<PythonOutput> => {
  const result = await run("python3", [script, JSON.stringify(spec)])
  if (result.status !== 0) {
    throw new ToolError({ message: `python ${String(spec["op"])} exited ${result.status}\n${result.stdout}\n${result.stderr}` })
  }
  const value: unknown = JSON.parse(result.stdout)
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ToolError({ message: `python ${String(spec["op"])}: not a JSON object: ${result.stdout}` })
  }
  return value as PythonOutput
}

const numberField = (out: PythonOutput, key: string): number => {
  const value = out[key]
  if (typeof value !== "number") throw new ToolError({ message: `expected a number at ${key}: ${JSON.stringify(out)}` })
  return value
}

const stringField = (out: PythonOutput, key: string): string => {
  const value = out[key]
  if (typeof value !== "string") throw new ToolError({ message: `expected a string at ${key}: ${JSON.stringify(out)}` })
  return value
}

/** A `[code, text]` reply from smtplib: the code, and the text starting with the enhanced code. */
const expectPyReply = (out: PythonOutput, key: string, code: number, text: string | RegExp) => {
  const value = out[key]
  assert.isTrue(Array.isArray(value) && value.length === 2, `${key}: ${JSON.stringify(out)}`)
  const [got, message] = Array.isArray(value) ? value : []
  assert.strictEqual(got, code, `${key}: ${JSON.stringify(value)}`)
  if (typeof text === "string") assert.strictEqual(message, text, key)
  else assert.match(String(message), text, key)
}

// ---------------------------------------------------------------------------------------------
// Events

type Tagged<T extends Event.Event["_tag"]> = Extract<Event.Event, { readonly _tag: T }>

const ofTag = <T extends Event.Event["_tag"]>(events: ReadonlyArray<Event.Event>, tag: T): Array<Tagged<T>> =>
  events.filter((e): e is Tagged<T> => e._tag === tag)

const only = <A>(items: ReadonlyArray<A>, what: string): A => {
  assert.strictEqual(items.length, 1, `expected exactly one ${what}, got ${JSON.stringify(items)}`)
  const [item] = items
  if (item === undefined) throw new ToolError({ message: `no ${what}` })
  return item
}

interface SessionMatch {
  /** Sessions opened at or after this time (ms since the epoch). */
  readonly since: number
  /** The listener's port. */
  readonly listener?: number
  /** The client's port. */
  readonly peer?: number
}

const sessionsMatching = async (daemon: Daemon, match: SessionMatch): Promise<Array<Array<Event.Event>>> => {
  const events = await daemon.readLog()
  const ids = new Set(
    ofTag(events, "SessionOpened")
      .filter((e) =>
        e.at >= match.since &&
        (match.listener === undefined || e.local.port === match.listener) &&
        (match.peer === undefined || e.peer.port === match.peer)
      )
      .map((e) => e.session)
  )
  const bySession = new Map<string, Array<Event.Event>>()
  for (const event of events) {
    if (!("session" in event) || !ids.has(event.session)) continue
    const list = bySession.get(event.session) ?? []
    list.push(event)
    bySession.set(event.session, list)
  }
  return [...bySession.values()]
}

/** The events of the one session that matches, once it has closed (the log is written as it goes). */
const closedSession = async (daemon: Daemon, match: SessionMatch, timeout = 10_000): Promise<Array<Event.Event>> => {
  const deadline = Date.now() + timeout
  while (true) {
    const sessions = await sessionsMatching(daemon, match)
    assert.isAtMost(sessions.length, 1, `more than one session matches ${JSON.stringify(match)}`)
    const [session] = sessions
    if (session !== undefined && session.some((e) => e._tag === "SessionClosed")) return session
    if (Date.now() > deadline) {
      throw new ToolError({ message: `no closed session matching ${JSON.stringify(match)}: ${JSON.stringify(session)}` })
    }
    await sleep(50)
  }
}

const sessionIdOf = (events: ReadonlyArray<Event.Event>): string => only(ofTag(events, "SessionOpened"), "SessionOpened").session

/** The worker partition that served a session ("w0", "w1"): session ids start with it. */
const workerOf = (events: ReadonlyArray<Event.Event>): string => sessionIdOf(events).split("-")[0] ?? ""

const establishedIn = (events: ReadonlyArray<Event.Event>): Event.TlsFacts =>
  only(ofTag(events, "TlsEstablished"), "TlsEstablished").facts

const failureIn = (events: ReadonlyArray<Event.Event>): Tagged<"TlsHandshakeFailed"> =>
  only(ofTag(events, "TlsHandshakeFailed"), "TlsHandshakeFailed")

const closeReasonOf = (events: ReadonlyArray<Event.Event>): string =>
  only(ofTag(events, "SessionClosed"), "SessionClosed").reason

/** The session that queued `queueId`. */
const sessionOfQueueId = async (daemon: Daemon, queueId: string): Promise<Array<Event.Event>> => {
  const events = await daemon.readLog()
  const queued = only(ofTag(events, "MessageQueued").filter((e) => e.queueId === queueId), `MessageQueued ${queueId}`)
  return events.filter((e) => "session" in e && e.session === queued.session)
}

// ---------------------------------------------------------------------------------------------
// Raw clients

const expectReply = (reply: SmtpReply, code: number, enhanced: string | undefined) =>
  assert.deepStrictEqual([reply.code, reply.enhanced], [code, enhanced], describeReply(reply))


// ---------------------------------------------------------------------------------------------

describe("TLS with real clients: certificates by SNI, versions, deliveries, hostile handshakes", () => {
  let daemon: Daemon
  let directory = ""
  let pki: Certificates.Pki
  let python: (spec: Record<string, unknown>) => Promise<PythonOutput>
  let implicitPort = 0
  let plainPort = 0

  beforeAll(async () => {
    directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-tls-e2e-"))
    pki = await Certificates.makePki(Path.join(directory, "pki"), {
      leaves: [
        { name: "default", dns: ["mx.postern.test"], keyType: "ecdsa", keyFormat: "sec1" },
        { name: "mail", dns: ["mail.example.test"], keyType: "rsa", keyFormat: "pkcs1" },
        { name: "wild", dns: ["*.wild.test"], keyType: "ecdsa", viaIntermediate: true, passphrase: "wild secret" }
      ]
    })
    const script = Path.join(directory, "client.py")
    Fs.writeFileSync(script, pythonHelper)
    python = pythonRunner(script)
    const leaf = (name: string) => ({ certificate: pki.leaf(name).certificateFile, key: pki.leaf(name).keyFile })
    daemon = await startDaemon({
      tls: {
        ...leaf("default"),
        domains: [
          { names: ["mail.example.test"], ...leaf("mail") },
          { names: ["*.wild.test"], ...leaf("wild"), passphrase: "wild secret" }
        ],
        handshakeTimeout: handshakeTimeout
      },
      extraListeners: [{ role: "submissions" }, { role: "smtp", tls: "none" }]
    })
    implicitPort = daemon.ports.extra[0] ?? 0
    plainPort = daemon.ports.extra[1] ?? 0
  })

  afterAll(async () => {
    await daemon?.dispose()
    if (directory !== "") Fs.rmSync(directory, { recursive: true, force: true })
  })

  // ---- 1. certificates by SNI

  interface SniCase {
    readonly label: string
    readonly servername: string | undefined
    readonly leaf: string
    readonly certificate: string
    readonly match: Event.CertificateMatch
    /** The name the served certificate must be valid for. */
    readonly validFor: string
  }

  const sniCases: ReadonlyArray<SniCase> = [
    {
      label: "an exact name",
      servername: "mail.example.test",
      leaf: "mail",
      certificate: "mail.example.test",
      match: "exact",
      validFor: "mail.example.test"
    },
    {
      label: "a wildcard name",
      servername: "relay.wild.test",
      leaf: "wild",
      certificate: "*.wild.test",
      match: "wildcard",
      validFor: "relay.wild.test"
    },
    { label: "no SNI", servername: undefined, leaf: "default", certificate: "default", match: "default", validFor: "mx.postern.test" },
    {
      label: "an unknown name",
      servername: "unknown.other.test",
      leaf: "default",
      certificate: "default",
      match: "default",
      validFor: "mx.postern.test"
    }
  ]

  for (const starttls of [true, false]) {
    for (const c of sniCases) {
      const kind = starttls ? "openssl s_client -starttls smtp" : "openssl s_client on the implicit TLS port"
      it(`${kind} with ${c.label}: the ${c.certificate} certificate, verified against the test CA`, async () => {
        const since = Date.now()
        const port = starttls ? daemon.ports.smtp : implicitPort
        const result = await sClient({ port, starttls, servername: c.servername, ca: pki.ca.certificateFile, verifyHostname: c.validFor })
        assert.strictEqual(result.status, 0, result.output)
        assert.include(result.output, "Verify return code: 0 (ok)")
        const leaf = pki.leaf(c.leaf)
        const [served, ...chain] = certificatesIn(result.output)
        assert.isDefined(served, result.output)
        assert.strictEqual(served?.fingerprint256, leaf.fingerprint256)
        assert.strictEqual(served?.subject, `CN=${leaf.dns[0]}`)
        assert.strictEqual(served?.subjectAltName, `DNS:${leaf.dns[0]}`)
        // The wildcard's leaf is signed by the intermediate, which the server sends along.
        assert.deepStrictEqual(
          chain.map((cert) => cert.subject),
          c.leaf === "wild" ? ["CN=Postern Test Intermediate CA"] : []
        )
        const events = await closedSession(daemon, { since, listener: port })
        const facts = establishedIn(events)
        assert.strictEqual(facts.sni, c.servername)
        assert.strictEqual(facts.certificate, c.certificate)
        assert.strictEqual(facts.match, c.match)
        assert.strictEqual(only(ofTag(events, "TlsHandshakeStarted"), "TlsHandshakeStarted").mode, starttls ? "starttls" : "implicit")
      })
    }
  }

  // ---- 2. protocol versions on every TLS port

  const tlsPorts: ReadonlyArray<readonly [string, () => number, boolean]> = [
    ["STARTTLS on the smtp port", () => daemon.ports.smtp, true],
    ["STARTTLS on the submission port", () => daemon.ports.submission, true],
    ["the implicit TLS port", () => implicitPort, false]
  ]

  for (const [where, portOf, starttls] of tlsPorts) {
    for (const [flag, version] of [["-tls1", "TLSv1"], ["-tls1_1", "TLSv1.1"]] as const) {
      it(`${version} is refused on ${where}: protocol_version alert, TlsHandshakeFailed protocol-version`, async () => {
        const since = Date.now()
        const port = portOf()
        const result = await sClient({ port, starttls, servername: "mail.example.test", ca: pki.ca.certificateFile, protocol: flag })
        assert.notStrictEqual(result.status, 0, result.output)
        assert.match(result.output, /alert protocol version/, result.output)
        const events = await closedSession(daemon, { since, listener: port })
        assert.strictEqual(failureIn(events).reason, "protocol-version")
        assert.deepStrictEqual(ofTag(events, "TlsEstablished"), [])
        assert.strictEqual(closeReasonOf(events), "tls-failed")
      })
    }
    for (const [flag, version] of [["-tls1_2", "TLSv1.2"], ["-tls1_3", "TLSv1.3"]] as const) {
      it(`${version} is accepted on ${where}`, async () => {
        const since = Date.now()
        const port = portOf()
        const result = await sClient({ port, starttls, servername: "mail.example.test", ca: pki.ca.certificateFile, protocol: flag })
        assert.strictEqual(result.status, 0, result.output)
        assert.match(result.output, new RegExp(`New, ${version.replace(".", "\\.")}, Cipher is `), result.output)
        assert.include(result.output, "Verify return code: 0 (ok)")
        const events = await closedSession(daemon, { since, listener: port })
        assert.strictEqual(establishedIn(events).version, version)
      })
    }
  }

  it("after refused handshakes on every TLS port, the daemon still delivers", async () => {
    await assertStillDelivers(daemon)
  })

  // ---- 3. Python deliveries and the Received header

  const receivedWithTls = (version: string, cipher: string) =>
    `Received: from client.test (unknown [127.0.0.1])\r\n\t(using ${version} with cipher ${cipher} (256/256 bits))\r\n` +
    "\tby mx.postern.test (Postern) with ESMTPS id "

  const pythonDelivery = async (mode: "starttls" | "implicit", port: number, servername: string, version?: string) => {
    const token = uniqueToken(`py-${mode}`)
    const since = Date.now()
    const out = await python({
      op: "session",
      mode,
      port,
      servername,
      ca: pki.ca.certificateFile,
      ...(version === undefined ? {} : { version }),
      from: "sender@client.test",
      to: ["alice@example.test"],
      message: `Subject: ${token}\r\n\r\n${token}\r\n`
    })
    assert.deepStrictEqual(out["refused"], {})
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    const events = await closedSession(daemon, { since, peer: numberField(out, "localPort") })
    return { out, mail, events }
  }

  it("Python smtplib STARTTLS on the smtp port, verifying mail.example.test: delivered, Received says TLSv1.3 and ESMTPS", async () => {
    const { out, mail, events } = await pythonDelivery("starttls", daemon.ports.smtp, "mail.example.test")
    assert.strictEqual(out["version"], "TLSv1.3")
    assert.match(stringField(out, "cipher"), /^TLS_[A-Z0-9_]+$/)
    assert.isTrue(mail.text.startsWith(receivedWithTls("TLSv1.3", stringField(out, "cipher"))), mail.text.slice(0, 300))
    const facts = establishedIn(events)
    assert.deepStrictEqual([facts.version, facts.cipher, facts.sni, facts.match], ["TLSv1.3", out["cipher"], "mail.example.test", "exact"])
  })

  it("Python smtplib SMTP_SSL on the implicit port, verifying relay.wild.test: delivered, Received says TLSv1.3 and ESMTPS", async () => {
    const { out, mail, events } = await pythonDelivery("implicit", implicitPort, "relay.wild.test")
    assert.strictEqual(out["version"], "TLSv1.3")
    assert.match(stringField(out, "cipher"), /^TLS_[A-Z0-9_]+$/)
    assert.isTrue(mail.text.startsWith(receivedWithTls("TLSv1.3", stringField(out, "cipher"))), mail.text.slice(0, 300))
    assert.strictEqual(establishedIn(events).match, "wildcard")
  })

  it("Python smtplib STARTTLS on the submission port with TLS 1.2: Received names the ECDHE cipher, ESMTPS", async () => {
    const { out, mail } = await pythonDelivery("starttls", daemon.ports.submission, "mail.example.test", "TLSv1.2")
    assert.strictEqual(out["version"], "TLSv1.2")
    // The RSA certificate of mail.example.test, the server's cipher order: ECDHE-RSA with AES-256-GCM.
    assert.strictEqual(out["cipher"], "ECDHE-RSA-AES256-GCM-SHA384")
    assert.isTrue(mail.text.startsWith(receivedWithTls("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")), mail.text.slice(0, 300))
  })

  // ---- 4. plaintext injected after STARTTLS

  it("STARTTLS\\r\\nNOOP\\r\\n in one write: the NOOP is discarded, never answered inside TLS", async () => {
    const since = Date.now()
    const out = await python({ op: "inject", port: daemon.ports.smtp, servername: "mail.example.test", ca: pki.ca.certificateFile })
    assert.deepStrictEqual(out["starttls"], ["220 2.0.0 Ready to start TLS"])
    assert.strictEqual(out["version"], "TLSv1.3")
    const replies = out["replies"]
    assert.isTrue(Array.isArray(replies), JSON.stringify(out))
    const [ehlo, noop, quit] = Array.isArray(replies) ? (replies as Array<Array<string>>) : []
    // The first reply inside TLS answers the client's own EHLO, and STARTTLS is no longer offered.
    assert.strictEqual(ehlo?.[0], "250-mx.postern.test", JSON.stringify(out))
    assert.notInclude(ehlo ?? [], "250-STARTTLS")
    assert.deepStrictEqual(noop, ["250 2.0.0 Ok"])
    assert.deepStrictEqual(quit, ["221 2.0.0 Bye"])
    assert.strictEqual(out["rest"], "", "nothing after the reply to QUIT")
    const events = await closedSession(daemon, { since, peer: numberField(out, "localPort") })
    assert.strictEqual(only(ofTag(events, "TlsHandshakeStarted"), "TlsHandshakeStarted").discardedBytes, 6)
    assert.deepStrictEqual(
      ofTag(events, "CommandReceived").map((e) => e.line),
      ["EHLO client.test", "STARTTLS", "EHLO client.test", "NOOP", "QUIT"]
    )
    await assertStillDelivers(daemon)
  })

  // ---- 5. stalled handshakes

  const expectDropped = async (client: SmtpClient, since: number) => {
    const peer = client.localPort
    const started = Date.now()
    await client.expectClose(handshakeTimeout + 3000)
    const elapsed = Date.now() - started
    assert.isAtLeast(elapsed, handshakeTimeout - 100, `dropped after ${elapsed} ms, before the handshake timeout`)
    assert.isAtMost(elapsed, 3000, `dropped only after ${elapsed} ms`)
    const events = await closedSession(daemon, { since, peer })
    const failed = failureIn(events)
    assert.strictEqual(failed.reason, "timeout")
    assert.strictEqual(failed.detail, `no complete handshake within ${handshakeTimeout} ms`)
    assert.strictEqual(closeReasonOf(events), "tls-failed")
  }

  const afterStarttls = async (): Promise<SmtpClient> => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    expectReply(await client.request("EHLO client.test"), 250, undefined)
    expectReply(await client.request("STARTTLS"), 220, "2.0.0")
    return client
  }

  it("STARTTLS, 220, then silence: dropped at the handshake timeout, TlsHandshakeFailed timeout", async () => {
    const since = Date.now()
    const client = await afterStarttls()
    try {
      await expectDropped(client, since)
    } finally {
      client.destroy()
    }
    await assertStillDelivers(daemon)
  })

  it("STARTTLS, 220, then half a ClientHello: dropped at the handshake timeout", async () => {
    const hello = await ClientHello.capture({ servername: "mail.example.test" })
    const since = Date.now()
    const client = await afterStarttls()
    try {
      await client.send(hello.subarray(0, Math.floor(hello.length / 2)))
      await expectDropped(client, since)
    } finally {
      client.destroy()
    }
    await assertStillDelivers(daemon)
  })

  it("implicit TLS port, connect and send nothing: dropped at the handshake timeout", async () => {
    const since = Date.now()
    const client = await SmtpClient.connect(implicitPort)
    try {
      await expectDropped(client, since)
    } finally {
      client.destroy()
    }
    await assertStillDelivers(daemon)
  })

  it("implicit TLS port, half a ClientHello: dropped at the handshake timeout", async () => {
    const hello = await ClientHello.capture({ servername: "mail.example.test" })
    const since = Date.now()
    const client = await SmtpClient.connect(implicitPort)
    try {
      await client.send(hello.subarray(0, Math.floor(hello.length / 2)))
      await expectDropped(client, since)
    } finally {
      client.destroy()
    }
    await assertStillDelivers(daemon)
  })

  // ---- 6. a ClientHello on a plaintext port

  const tlsRecordReply = "500 5.5.1 Error: TLS handshake on a plaintext connection; use STARTTLS or the implicit TLS port\r\n"

  it("Python ssl ClientHello on the smtp port before STARTTLS: the greeting, 500 5.5.1, close; LineRejected tls-record", async () => {
    const since = Date.now()
    const out = await python({
      op: "hello-on-plaintext",
      port: daemon.ports.smtp,
      servername: "mail.example.test",
      ca: pki.ca.certificateFile
    })
    assert.isAbove(numberField(out, "helloBytes"), 100)
    assert.strictEqual(out["raw"], `220 mx.postern.test ESMTP Postern\r\n${tlsRecordReply}`)
    assert.match(stringField(out, "handshakeError"), /WRONG_VERSION_NUMBER|wrong version number/)
    const events = await closedSession(daemon, { since, peer: numberField(out, "localPort") })
    assert.deepStrictEqual(ofTag(events, "LineRejected").map((e) => e.reason), ["tls-record"])
    assert.deepStrictEqual(ofTag(events, "CommandReceived"), [])
    assert.strictEqual(closeReasonOf(events), "protocol")
    await assertStillDelivers(daemon)
  })

  it("openssl s_client -connect on a tls: none listener: the handshake fails; 500 5.5.1, LineRejected tls-record", async () => {
    const since = Date.now()
    const result = await sClient({ port: plainPort, starttls: false, servername: "mail.example.test", ca: pki.ca.certificateFile })
    assert.notStrictEqual(result.status, 0, result.output)
    assert.match(result.output, /wrong version number|packet length too long|record layer failure/, result.output)
    const events = await closedSession(daemon, { since, listener: plainPort })
    assert.deepStrictEqual(ofTag(events, "LineRejected").map((e) => e.reason), ["tls-record"])
    assert.deepStrictEqual(ofTag(events, "ReplySent").map((e) => [e.code, e.enhanced]), [[220, undefined], [500, "5.5.1"]])
    await assertStillDelivers(daemon)
  })

  // ---- 7. swaks

  /**
   * swaks with its host-name lookup answered by the host name itself: swaks asks the resolver
   * for the machine's own name (for a Message-Id) even when told the HELO name, and that
   * question must not leave the machine.
   */
  const swaks = (port: number, mode: ReadonlyArray<string>, token: string) =>
    run("perl", [
      "-e",
      "BEGIN { *CORE::GLOBAL::gethostbyname = sub { return () } } my $swaks = shift @ARGV; do $swaks; die $@ if $@",
      onPath("swaks"),
      "--server",
      "127.0.0.1",
      "--port",
      String(port),
      "--helo",
      "client.test",
      "--from",
      "sender@client.test",
      "--to",
      "alice@example.test",
      "--header",
      `Subject: ${token}`,
      "--body",
      token,
      "--tls-verify",
      "--tls-ca-path",
      pki.ca.certificateFile,
      ...mode
    ])

  const swaksDelivery = async (port: number, mode: ReadonlyArray<string>, peerName: string) => {
    const token = uniqueToken("swaks")
    const result = await swaks(port, mode, token)
    assert.strictEqual(result.status, 0, result.stdout + result.stderr)
    assert.match(result.stdout, /=== TLS started with cipher TLSv1\.3:TLS_AES_256_GCM_SHA384:256/)
    assert.include(result.stdout, `=== TLS peer DN="/CN=${peerName}"`)
    const queueId = /<~ {2}250 2\.0\.0 Ok: queued as (\S+)/.exec(result.stdout)?.[1]
    assert.isDefined(queueId, result.stdout)
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.include(mail.text, "with ESMTPS id ")
    return sessionOfQueueId(daemon, queueId ?? "")
  }

  it("swaks --tls on the submission port: delivered over STARTTLS", async () => {
    const events = await swaksDelivery(daemon.ports.submission, ["--tls"], "mx.postern.test")
    assert.strictEqual(only(ofTag(events, "TlsHandshakeStarted"), "TlsHandshakeStarted").mode, "starttls")
    assert.strictEqual(establishedIn(events).match, "default")
  })

  it("swaks --tlsc on the implicit port: delivered over implicit TLS", async () => {
    const events = await swaksDelivery(implicitPort, ["--tlsc"], "mx.postern.test")
    assert.strictEqual(only(ofTag(events, "TlsHandshakeStarted"), "TlsHandshakeStarted").mode, "implicit")
  })

  it("swaks --tls --tls-sni swaks.wild.test: TlsEstablished records the SNI and the wildcard certificate", async () => {
    const events = await swaksDelivery(daemon.ports.smtp, ["--tls", "--tls-sni", "swaks.wild.test"], "*.wild.test")
    const facts = establishedIn(events)
    assert.deepStrictEqual([facts.sni, facts.certificate, facts.match], ["swaks.wild.test", "*.wild.test", "wildcard"])
  })

  it("swaks --tlsc --tls-sni mail.example.test: TlsEstablished records the SNI and the exact certificate", async () => {
    const events = await swaksDelivery(implicitPort, ["--tlsc", "--tls-sni", "mail.example.test"], "mail.example.test")
    const facts = establishedIn(events)
    assert.deepStrictEqual([facts.sni, facts.certificate, facts.match], ["mail.example.test", "mail.example.test", "exact"])
  })

  // ---- 8. security levels

  it("submission (encrypt): STARTTLS offered, 530 before it, 501 with an argument, 503 without a new EHLO, 554 inside TLS", async () => {
    const out = await python({ op: "levels", port: daemon.ports.submission, servername: "mail.example.test", ca: pki.ca.certificateFile })
    assert.isTrue(out["offered"], JSON.stringify(out))
    expectPyReply(out, "mail", 530, "5.7.0 Must issue a STARTTLS command first")
    expectPyReply(out, "starttlsWithArgument", 501, /^5\.5\.4 /)
    expectPyReply(out, "starttls", 220, "2.0.0 Ready to start TLS")
    // RFC 3207 4.2: the session starts over; MAIL needs a new EHLO.
    expectPyReply(out, "mailWithoutEhlo", 503, /^5\.5\.1 /)
    expectPyReply(out, "ehloInTls", 250, /^mx\.postern\.test\n/)
    assert.isFalse(out["offeredInTls"], "STARTTLS is not advertised inside TLS")
    expectPyReply(out, "starttlsAgain", 554, /^5\.5\.1 /)
    expectPyReply(out, "mailInTls", 250, "2.1.0 Ok")
  })

  it("a listener with tls: none neither offers nor accepts STARTTLS: 502 5.5.1, and mail goes on in plaintext", async () => {
    const out = await python({ op: "levels", port: plainPort, servername: "mail.example.test", ca: pki.ca.certificateFile })
    assert.isFalse(out["offered"], JSON.stringify(out))
    expectPyReply(out, "starttls", 502, /^5\.5\.1 /)
    expectPyReply(out, "mail", 250, "2.1.0 Ok")
  })

  it("smtp (may): STARTTLS with an argument is 501 5.5.4; MAIL before STARTTLS is accepted", async () => {
    const client = await SmtpClient.open(daemon.ports.smtp)
    try {
      const ehlo = await client.request("EHLO client.test")
      expectReply(ehlo, 250, undefined)
      assert.include(ehlo.lines, "STARTTLS")
      expectReply(await client.request("STARTTLS now"), 501, "5.5.4")
      expectReply(await client.request("MAIL FROM:<sender@client.test>"), 250, "2.1.0")
      await client.quit()
    } finally {
      client.destroy()
    }
  })

  // ---- 11. replay

  it("postern replay --session shows the handshake, the TLS facts and the discarded plaintext of a STARTTLS session", async () => {
    const since = Date.now()
    const out = await python({ op: "inject", port: daemon.ports.smtp, servername: "mail.example.test", ca: pki.ca.certificateFile })
    const events = await closedSession(daemon, { since, peer: numberField(out, "localPort") })
    const result = await daemon.replay([daemon.logDir, "--session", sessionIdOf(events)])
    assert.strictEqual(result.code, 0, result.stderr)
    for (
      const expected of [
        "S: 220 2.0.0 Ready to start TLS",
        "-- TLS handshake (starttls); 6 octets of plaintext after STARTTLS discarded",
        "TLSv1.3 TLS_AES_256_GCM_SHA384 (256 bits)",
        "SNI mail.example.test, certificate mail.example.test (exact), full handshake",
        "C: NOOP",
        "S: 250 2.0.0 Ok",
        "-- closed: quit"
      ]
    ) assert.include(result.stdout, expected)
    assert.match(result.stdout, /-- TLS established in \d+ ms: TLSv1\.3 /)
  })

  it("postern replay --session shows a handshake that timed out", async () => {
    const since = Date.now()
    const client = await SmtpClient.connect(implicitPort)
    const peer = client.localPort
    try {
      await client.expectClose(handshakeTimeout + 3000)
    } finally {
      client.destroy()
    }
    const events = await closedSession(daemon, { since, peer })
    const result = await daemon.replay([daemon.logDir, "--session", sessionIdOf(events)])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.include(result.stdout, "-- TLS handshake (implicit)")
    assert.match(
      result.stdout,
      new RegExp(`-- TLS handshake failed after \\d+ ms: timeout \\(no complete handshake within ${handshakeTimeout} ms\\)`)
    )
    assert.include(result.stdout, "-- closed: tls-failed")
  })

  it("postern replay --verify reproduces every reply of every session above, TLS ones included", async () => {
    const result = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.match(result.stdout, /verified \d+ sessions, \d+ replies: all identical/)
    assert.deepStrictEqual(readMailbox(daemon, "example.test", "bob"), [])
  })
})

describe("TLS with real clients: required SNI, client certificates, resumption across workers", () => {
  let daemon: Daemon
  let directory = ""
  let pki: Certificates.Pki
  let python: (spec: Record<string, unknown>) => Promise<PythonOutput>
  let implicitPort = 0
  let selfSigned = { file: "", key: "", fingerprint256: "" }

  beforeAll(async () => {
    directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-tls-e2e-"))
    pki = await Certificates.makePki(Path.join(directory, "pki"), {
      leaves: [
        { name: "default", dns: ["mx.postern.test"] },
        { name: "mail", dns: ["mail.example.test"], keyType: "rsa" },
        { name: "client", dns: ["client.test"], clientAuth: true }
      ]
    })
    const script = Path.join(directory, "client.py")
    Fs.writeFileSync(script, pythonHelper)
    python = pythonRunner(script)
    const file = Path.join(directory, "self-signed.crt")
    const key = Path.join(directory, "self-signed.key")
    const made = await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-subj",
      "/CN=self-signed.client.test",
      "-days",
      "2",
      "-keyout",
      key,
      "-out",
      file
    ])
    assert.strictEqual(made.status, 0, made.stderr)
    selfSigned = { file, key, fingerprint256: new Crypto.X509Certificate(Fs.readFileSync(file)).fingerprint256 }
    daemon = await startDaemon({
      tls: {
        certificate: pki.leaf("default").certificateFile,
        key: pki.leaf("default").keyFile,
        domains: [{ names: ["mail.example.test"], certificate: pki.leaf("mail").certificateFile, key: pki.leaf("mail").keyFile }],
        requireSni: true,
        clientCertificates: { request: true, ca: pki.ca.certificateFile }
      },
      workers: 2,
      extraListeners: [{ role: "submissions" }]
    })
    implicitPort = daemon.ports.extra[0] ?? 0
  })

  afterAll(async () => {
    await daemon?.dispose()
    if (directory !== "") Fs.rmSync(directory, { recursive: true, force: true })
  })

  // ---- 1. requireSni

  it("requireSni: an unknown name gets a handshake_failure alert; TlsHandshakeFailed unknown-sni", async () => {
    const since = Date.now()
    const result = await sClient({ port: implicitPort, starttls: false, servername: "unknown.other.test", ca: pki.ca.certificateFile })
    assert.notStrictEqual(result.status, 0, result.output)
    assert.match(result.output, /alert handshake failure/, result.output)
    assert.deepStrictEqual(certificatesIn(result.output), [])
    const events = await closedSession(daemon, { since, listener: implicitPort })
    const failed = failureIn(events)
    assert.strictEqual(failed.reason, "unknown-sni")
    assert.strictEqual(failed.detail, "unrecognized name unknown.other.test")
  })

  it("requireSni: no SNI at all gets a handshake_failure alert and no certificate", async () => {
    const since = Date.now()
    const result = await sClient({ port: implicitPort, starttls: false, servername: undefined, ca: pki.ca.certificateFile })
    assert.notStrictEqual(result.status, 0, result.output)
    assert.match(result.output, /alert handshake failure/, result.output)
    assert.deepStrictEqual(certificatesIn(result.output), [])
    const events = await closedSession(daemon, { since, listener: implicitPort })
    assert.deepStrictEqual(ofTag(events, "TlsEstablished"), [])
    assert.strictEqual(closeReasonOf(events), "tls-failed")
    const failed = failureIn(events)
    assert.strictEqual(failed.reason, "unknown-sni")
    assert.match(failed.detail, /^the client sent no server name, and none is served without one/)
  })

  it("requireSni: a configured name is served its certificate, over STARTTLS too", async () => {
    const result = await sClient({
      port: daemon.ports.smtp,
      starttls: true,
      servername: "mail.example.test",
      ca: pki.ca.certificateFile,
      verifyHostname: "mail.example.test"
    })
    assert.strictEqual(result.status, 0, result.output)
    assert.strictEqual(certificatesIn(result.output)[0]?.fingerprint256, pki.leaf("mail").fingerprint256)
  })

  // ---- 10. client certificates

  it("a client certificate from the configured CA (Python ssl): subject, SHA-256 fingerprint, verified: true", async () => {
    const client = pki.leaf("client")
    const since = Date.now()
    const out = await python({
      op: "session",
      mode: "implicit",
      port: implicitPort,
      servername: "mail.example.test",
      ca: pki.ca.certificateFile,
      cert: client.certificateFile,
      key: client.keyFile
    })
    const events = await closedSession(daemon, { since, peer: numberField(out, "localPort") })
    assert.deepStrictEqual(establishedIn(events).clientCertificate, {
      subject: "CN=client.test",
      fingerprint256: client.fingerprint256,
      verified: true
    })
  })

  it("a self-signed client certificate (openssl s_client -starttls): recorded with verified: false, the session goes on", async () => {
    const since = Date.now()
    const result = await sClient({
      port: daemon.ports.smtp,
      starttls: true,
      servername: "mail.example.test",
      ca: pki.ca.certificateFile,
      certificate: { file: selfSigned.file, key: selfSigned.key }
    })
    assert.strictEqual(result.status, 0, result.output)
    const events = await closedSession(daemon, { since, listener: daemon.ports.smtp })
    assert.deepStrictEqual(establishedIn(events).clientCertificate, {
      subject: "CN=self-signed.client.test",
      fingerprint256: selfSigned.fingerprint256,
      verified: false
    })
  })

  it("no client certificate: TlsEstablished has no clientCertificate", async () => {
    const since = Date.now()
    const out = await python({
      op: "session",
      mode: "starttls",
      port: daemon.ports.smtp,
      servername: "mail.example.test",
      ca: pki.ca.certificateFile
    })
    const events = await closedSession(daemon, { since, peer: numberField(out, "localPort") })
    const facts = establishedIn(events)
    assert.strictEqual(facts.sni, "mail.example.test")
    assert.isUndefined(facts.clientCertificate)
  })

  // ---- 9. session resumption

  interface Resumed {
    /** The worker partition of each connection, in order. */
    readonly workers: ReadonlyArray<string>
    /** The TLS facts recorded for each connection, in order. */
    readonly facts: ReadonlyArray<Event.TlsFacts>
  }

  /**
   * `connections` connections from Python's ssl, each offering the session of the one before:
   * the first is a full handshake, every later one must be resumed, on both sides.
   */
  const resumption = async (mode: "implicit" | "starttls", version: "TLSv1.2" | "TLSv1.3", connections: number): Promise<Resumed> => {
    const since = Date.now()
    const out = await python({
      op: "resume",
      mode,
      connections,
      version,
      port: mode === "implicit" ? implicitPort : daemon.ports.smtp,
      servername: "mail.example.test",
      ca: pki.ca.certificateFile
    })
    const list = out["connections"]
    assert.isTrue(Array.isArray(list), JSON.stringify(out))
    const results = (Array.isArray(list) ? list : []) as Array<{ reused: boolean; localPort: number; version: string }>
    assert.strictEqual(results.length, connections)
    const workers: Array<string> = []
    const facts: Array<Event.TlsFacts> = []
    for (const [i, r] of results.entries()) {
      assert.strictEqual(r.version, version)
      assert.strictEqual(r.reused, i > 0, `connection ${i}: session_reused ${r.reused}`)
      const events = await closedSession(daemon, { since, peer: r.localPort })
      const established = establishedIn(events)
      assert.strictEqual(established.resumed, i > 0, `connection ${i}: TlsEstablished resumed`)
      assert.strictEqual(established.version, version)
      workers.push(workerOf(events))
      facts.push(established)
    }
    return { workers, facts }
  }

  /** Whether some connection resumed a ticket that the other worker had issued. */
  const crossedWorkers = (workers: ReadonlyArray<string>): boolean =>
    workers.some((worker, i) => i > 0 && worker !== workers[i - 1])

  const resumptionCases = [["implicit", "TLSv1.2"], ["implicit", "TLSv1.3"], ["starttls", "TLSv1.2"], ["starttls", "TLSv1.3"]] as const

  for (const [mode, version] of resumptionCases) {
    it(`Python ssl resumes a ${version} session (${mode}): session_reused, and TlsEstablished resumed: true`, async () => {
      await resumption(mode, version, 3)
    })
  }

  for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
    it(`a resumed ${version} session records the client's SNI and the certificate of the session it resumes`, async () => {
      // The client sends its SNI again when it resumes; the session was made with the
      // certificate of mail.example.test, not the default one.
      const { facts } = await resumption("implicit", version, 2)
      const resumed = facts[1]
      assert.deepStrictEqual(
        [resumed?.sni, resumed?.certificate, resumed?.match],
        ["mail.example.test", "mail.example.test", "exact"],
        JSON.stringify(resumed)
      )
    })
  }

  for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
    it(`with two workers, a ${version} session ticket issued by one worker resumes on the other`, async () => {
      assert.strictEqual(daemon.workerPids().length, 2)
      // The kernel, not the test, picks the worker of each connection: a few rounds make sure
      // consecutive connections landed on different workers at least once.
      const seen: Array<ReadonlyArray<string>> = []
      for (let round = 0; round < 5; round++) {
        const { workers } = await resumption("implicit", version, 6)
        seen.push(workers)
        if (crossedWorkers(workers)) return
      }
      assert.fail(`every connection went to the same worker as the one before: ${JSON.stringify(seen)}`)
    })
  }

  it("postern replay --verify reproduces every session of this daemon (both workers)", async () => {
    const result = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.match(result.stdout, /verified \d+ sessions, \d+ replies: all identical/)
  })
})
