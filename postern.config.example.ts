/**
 * An example Postern configuration showing every setting, with what it does and its default.
 *
 * Copy it to `postern.config.ts` and import from "postern" instead of "./src/index.ts":
 *
 *     import { defineConfig } from "postern"
 *
 * Every setting may be left out to take its default; a file containing only
 * `export default defineConfig({})` runs a server for `localhost` on ports 2525 and 2587
 * (STARTTLS) and 2465 (implicit TLS), with a self-signed certificate made on first start.
 * `postern config check <file>` validates a file and prints what it would do. A wrong value stops
 * the start with the field's path, the value and what was expected.
 *
 * Durations are milliseconds as a number, or strings such as "250ms", "300s", "5m",
 * "10 minutes", "1h". Relative paths resolve against the directory of this file.
 */
import { defineConfig, deny, inNetwork, networks, next, quarantine, relay, rule } from "./src/index.ts"

// Clients that may relay anywhere and send without TLS (Postfix's mynetworks).
const internal = networks("127.0.0.0/8", "::1")

export default defineConfig({
  // The name this server gives in its greeting, EHLO reply and Received headers.
  // Default: the machine's host name (os.hostname()).
  hostname: "mx.example.org",

  // The sockets to listen on. Each has an address (default "127.0.0.1"), a port (1 to 65535,
  // required) and a role:
  //   "smtp"        mail from other servers (port 25 in production);
  //   "submission"  mail from your users' clients (port 587);
  //   "submissions" the same with TLS from the first byte (port 465; Postfix's wrappermode).
  // tls: the STARTTLS level of an smtp or submission listener (RFC 3207):
  //   "none"     STARTTLS not offered;
  //   "may"      offered (default for smtp: other servers may not have TLS);
  //   "encrypt"  required: MAIL and AUTH before STARTTLS get 530 5.7.0 (default for submission).
  // A submissions listener is always TLS.
  // proxyProtocol: accept a PROXY protocol header from a load balancer on these
  // networks (CIDR, IPv4 or IPv6; a bare address means just that host); a header from anyone
  // else is refused. Two listeners may not share an address and port.
  // Default: [{ address: "127.0.0.1", port: 2525, role: "smtp" },
  //           { address: "127.0.0.1", port: 2587, role: "submission" },
  //           { address: "127.0.0.1", port: 2465, role: "submissions" }]
  listeners: [
    { address: "127.0.0.1", port: 2525, role: "smtp", tls: "may" },
    { address: "127.0.0.1", port: 2587, role: "submission", tls: "encrypt" },
    { address: "127.0.0.1", port: 2465, role: "submissions" },
    {
      address: "127.0.0.1",
      port: 2526,
      role: "smtp",
      proxyProtocol: { trustedNetworks: ["10.0.0.0/8", "fd00::/8"] }
    }
  ],

  // Where Postern keeps its state. The event log, spool and mailboxes live under it unless
  // given their own directories below (log.directory, spool.directory, maildirRoot).
  // Default: "./var"
  stateDirectory: "./var",

  // Root of the local mailboxes, one Maildir per domain and user.
  // Default: <stateDirectory>/mail
  maildirRoot: "./var/mail",

  // The domains this server delivers for. users is a list of local parts (matched without
  // regard to case) or "*" to accept every local part; transport is "maildir" (deliver into
  // maildirRoot) or "discard" (accept and drop: for testing). Domains are matched without
  // regard to case and may not repeat.
  // Default: [{ domain: "localhost", users: "*", transport: "maildir" }]
  localDomains: [
    { domain: "localhost", users: "*", transport: "maildir" },
    { domain: "example.org", users: ["postmaster", "alice", "bob"], transport: "maildir" },
    { domain: "sink.example.org", users: "*", transport: "discard" }
  ],

  limits: {
    // Largest message accepted, in bytes (announced in the EHLO SIZE keyword). Default: 10240000
    messageSize: 10_240_000,
    // Recipients accepted per message; further recipients are refused. Default: 100
    recipients: 100,
    // Bad commands per session before a 421 and disconnect. Default: 10
    errors: 10,
    // Connections open at once, over all listeners; more are refused with 421. Default: 20000
    connections: 20_000,
    // Connections open at once from one client address. Default: 200
    connectionsPerClient: 200,
    // Longest command line in bytes; at least 512, the minimum of RFC 5321. Default: 512
    lineLength: 512,
    // Bytes of an over-long line read and discarded while waiting for its end before the
    // session gives up. Default: 65536
    lineDiscard: 65_536
  },

  timeouts: {
    // Waiting for the next command (RFC 5321 4.5.3.2: at least 5 minutes). Default: "5 minutes"
    command: "5 minutes",
    // Waiting for each block of DATA content. Default: "3 minutes"
    dataBlock: "3 minutes",
    // From the end of DATA to the reply (RFC 5321 4.5.3.2.6). Default: "10 minutes"
    dataEnd: "10 minutes",
    // On shutdown, how long open sessions may finish before being closed. Default: "30s"
    shutdownGrace: "30s",
    // First retry of a delivery that failed temporarily. Default: "5 minutes"
    deliveryRetry: "5 minutes"
  },

  // Worker processes accepting connections: a positive integer, or "auto" for one per
  // available CPU (os.availableParallelism()). Default: "auto"
  workers: "auto",

  // The nice value (0 to 19) each worker gives libuv's thread pool, where the spool's and the
  // log's writes and fsyncs run, so that a woken I/O thread does not preempt the event loop on
  // a shared core (Linux; 0 leaves the threads as they are; a thread the daemon's own nice
  // already put lower is never raised). Applied at start, not on SIGHUP. Default: 10
  ioThreadNice: 10,

  log: {
    // Where the event log is written. Default: <stateDirectory>/log
    directory: "./var/log",
    // When ordinary log writes are flushed to disk: "always" (every batch), "interval" (every
    // fsyncInterval) or "never" (left to the operating system). The record of an accepted
    // message is on disk before its 250 reply whatever this says, so "interval" risks only the
    // last few milliseconds of session records at a crash (a torn tail is cut at restart).
    // Default: "interval"
    fsync: "interval",
    // How often the log is flushed when fsync is "interval". Default: "10ms"
    fsyncInterval: "10ms",
    // Size in bytes at which a log file is closed and a new one started. Default: 67108864 (64 MiB)
    rotateSize: 64 * 1024 * 1024
  },

  spool: {
    // Where accepted messages are stored until delivered. Default: <stateDirectory>/spool
    directory: "./var/spool",
    // Size in bytes of one spool segment file. Default: 67108864 (64 MiB)
    segmentSize: 64 * 1024 * 1024
  },

  tls: {
    // The default certificate (PEM: the certificate, then its intermediates) and its key (PEM:
    // RSA PKCS#1, PKCS#8 or EC SEC1, optionally encrypted with `passphrase`). Served to clients
    // that send no server name (SNI) or one no domain below matches. Without a certificate and
    // without domains, a self-signed one is made under <stateDirectory>/tls on first start.
    certificate: "/etc/postern/tls/mx.example.org.pem",
    key: "/etc/postern/tls/mx.example.org.key",
    // passphrase: "...",

    // Certificates by server name (SNI): exact names and wildcards ("*.example.org" matches one
    // label). Each may narrow the protocol versions (minVersion, maxVersion); ciphers and
    // groups are server-wide, because Node takes only the certificate from the SNI choice.
    // Default: []
    domains: [
      {
        names: ["mail.example.net", "*.example.net"],
        certificate: "/etc/postern/tls/example.net.pem",
        key: "/etc/postern/tls/example.net.key",
        minVersion: "TLSv1.3"
      }
    ],

    // Protocol versions: "TLSv1.2" or "TLSv1.3" (older ones are never offered).
    // Default: "TLSv1.2" to "TLSv1.3"
    minVersion: "TLSv1.2",
    maxVersion: "TLSv1.3",
    // TLS 1.2 ciphers (OpenSSL syntax). Default: ECDHE with AES-GCM or ChaCha20-Poly1305 only.
    ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:" +
      "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    // TLS 1.3 cipher suites. Default: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
    cipherSuites: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
    // Key exchange groups in preference order. Default: "X25519:P-256:P-384"
    groups: "X25519:P-256:P-384",
    // The server's cipher order wins (Postfix's tls_preempt_cipherlist). Default: true
    preferServerCiphers: true,
    // Fail handshakes whose server name matches no domain, even with a default certificate.
    // Default: false
    requireSni: false,
    // A client that has not finished the handshake by then is dropped. Default: "10s"
    handshakeTimeout: "10s",
    // Session resumption with tickets. The ticket key changes every `rotation` and is derived
    // from a secret under <stateDirectory>/tls, so every worker can resume any session.
    // Default: { lifetime: "2h", rotation: "1h" }
    sessionTickets: { lifetime: "2h", rotation: "1h" },
    // Ask clients for a certificate and check it against `ca`; the result (subject, SHA-256
    // fingerprint, verified or not) is recorded, and available to policy. Default: { request: false }
    clientCertificates: { request: false },
    // Certificates that expire within this time are reported at start and reload. Default: "14 days"
    expiryWarning: "14 days"
  },

  // Look up the client's host name from its address (PTR) for the Received header.
  // Default: false
  reverseDns: false,

  // SMTP AUTH (PLAIN, LOGIN) on listeners with `auth: true` (by default submission and
  // submissions), after TLS. Users: `postern user add NAME --file <usersFile>`.
  auth: {
    // Default: <stateDirectory>/users
    usersFile: "./var/users",
    // Offer AUTH before TLS too (passwords in the clear). Default: false
    allowPlaintext: false,
    // Failed attempts in one session before 421 4.7.0 and close. Default: 3
    maxFailures: 3,
    // Wait before a 535, doubled for each earlier failure of the session. Default: "1s"
    failureDelay: "1s"
  },

  // SPF (RFC 7208) of the sender at MAIL: ctx.spf for rules, the spf() rule, a Received-SPF
  // header; with helo, of the HELO name too (ctx.spfHelo). Every DNS answer it uses is
  // recorded for replay. Default: { check: false, helo: true, timeout: "10s" }
  spf: { check: false, helo: true, timeout: "10s" },
  // DKIM verification, ARC validation and DMARC (with SPF) of each message at data: ctx.dkim,
  // ctx.arc, ctx.dmarc, the dkimVerify() and dmarc() rules, an Authentication-Results field.
  // Default: { verify: false }
  // sign: keys for the mail authenticated clients send from our domains (postern dkim keygen).
  dkim: { verify: false, sign: [] },
  // Name servers for policy checks; default the system's. Default: { servers: [], timeout: "5s" }
  dns: { servers: [], timeout: "5s" },

  // Rules at each SMTP stage (connect, helo, auth, mail, rcpt, data), and the queue's (postq: once
  // a message is queued, before its first delivery; delivery: each recipient's attempt), run in order; the first verdict
  // other than `next` decides, and when all say `next` the stage's default does. A recipient
  // outside localDomains is refused (554 5.7.1 Relay access denied) unless a rule accepts it.
  // Every decision is a PolicyDecided event naming its rule; `postern replay --session` shows it.
  // Default: no rules, every stage "accept".
  policy: {
    rules: {
      mail: [
        rule("deny unencrypted", (ctx) =>
          ctx.isSecured || inNetwork(ctx.client.address, internal)
            ? next
            : deny(530, "5.7.0", "Must issue a STARTTLS command first"))
      ],
      rcpt: [relay({ internalNetworks: internal.texts })],
      postq: [
        rule("hold invoices for review", (ctx) =>
          /\binvoice\b/i.test(ctx.message?.header("subject") ?? "") && /\.zip\b/i.test(ctx.message?.body?.text() ?? "")
            ? quarantine("review")
            : next)
      ]
    },
    // What a stage does when every rule says next: "accept", "deny" or "tempfail".
    defaults: {
      connect: "accept",
      helo: "accept",
      auth: "accept",
      mail: "accept",
      rcpt: "accept",
      data: "accept",
      postq: "accept",
      delivery: "accept"
    },
    // A rule that returns an Effect (for I/O) and takes longer gives 451 4.3.0. Default: "5s"
    ruleTimeout: "5s",
    // Bytes of the body rules see (ctx.message.body), as Postfix's body_checks_size_limit. Default: 51200
    bodyLimit: 51_200
  }
})
