/**
 * One SMTP session: the fiber that performs what the pure machine decides.
 *
 * It pulls bytes from the connection, feeds the framer and the machine, writes replies, streams
 * content into the queue, and records every input and reply as an event so that the session
 * can be replayed. Replies are collected and written when the framer needs more input, so a
 * pipelined group (RFC 2920) gets all its replies in one write.
 */
import { Clock, Effect, Result } from "effect"
import * as Event from "../log/Event.ts"
import { EventLog } from "../log/EventLog.ts"
import { acceptedByDefault, Policy } from "../policy/Policy.ts"
import type * as Rule from "../policy/Rule.ts"
import { Queue, type QueueTxn } from "../queue/Queue.ts"
import * as Connection from "../tls/Connection.ts"
import * as Handshake from "../tls/Handshake.ts"
import type * as HandshakeFailure from "../tls/HandshakeFailure.ts"
import * as DkimSign from "../policy/DkimSign.ts"
import * as Dns from "../policy/Dns.ts"
import * as MessageAuth from "../policy/MessageAuth.ts"
import * as Spf from "../policy/Spf.ts"
import * as Address from "./Address.ts"
import * as Command from "./Command.ts"
import * as Framer from "./Framer.ts"
import * as Headers from "./Headers.ts"
import * as Machine from "./Machine.ts"
import * as PolicyContext from "./PolicyContext.ts"
import * as Received from "./Received.ts"
import * as Reply from "./Reply.ts"
import * as Sasl from "./Sasl.ts"

export interface SessionOptions {
  readonly id: string
  readonly role: Event.Role
  readonly peer: Event.Endpoint
  readonly local: Event.Endpoint
  readonly proxiedBy: Event.Endpoint | undefined
  /** The peer's reverse DNS name (reverse lookups are a setting, off by default). */
  readonly clientName: string | undefined
  readonly admission: Event.Admission
  /** The listener's TLS level. */
  readonly security: Event.Security
  /** SMTP AUTH: whether the listener offers it, how credentials are checked, the failure delay. */
  readonly auth: AuthOptions
  /**
   * SPF checking at MAIL (`spf.check`): the DNS to ask, how long the check may take, and whether
   * the HELO identity is checked too (`spf.helo`).
   */
  readonly spf?: { readonly resolve: Dns.Resolve; readonly timeout: number; readonly helo?: boolean } | undefined
  /** DKIM and DMARC at data (`dkim.verify`): the DNS to ask. */
  readonly messageAuth?: { readonly resolve: Dns.Resolve } | undefined
  /** DKIM signing keys by domain (`dkim.sign`), for authenticated clients' mail. */
  readonly dkimKeys?: ReadonlyMap<string, DkimSign.SigningKey> | undefined
  /** Runs a TLS handshake; undefined when the listener has no TLS (then `security` is "none"). */
  readonly tls: Handshake.Upgrade | undefined
  /** Bytes that arrived with a PROXY header, already belonging to the SMTP conversation. */
  readonly initial: Uint8Array | undefined
  readonly settings: Event.MachineSettings
  readonly settingsDigest: string
  readonly limits: Framer.FramerLimits
  readonly timeouts: { readonly command: number; readonly dataBlock: number; readonly dataEnd: number }
  /** True once the daemon is stopping; checked when the connection is signalled. */
  readonly shuttingDown: () => boolean
}

export interface AuthOptions {
  readonly offered: boolean
  /** The user (as the users file names it) when the password matches, else undefined. */
  readonly verify: (user: string, password: string) => Promise<string | undefined>
  /** Milliseconds before a 535; doubled for each earlier failure of the session, at most 30 s. */
  readonly failureDelay: number
}

/** How long a failed AUTH waits, growing with the session's earlier failures (Postfix-like tarpit). */
export const authFailureDelay = (base: number, earlierFailures: number): number =>
  Math.min(30_000, base * 2 ** earlierFailures)

const decoder = new TextDecoder("utf-8")
const encoder = new TextEncoder()

/**
 * AUTH arguments are credentials: only the mechanism (SASL mechanism characters) reaches the
 * log. Each run of printable characters after it becomes "***" and separators and control
 * characters stay, so the redacted line parses to the same verdict and replay gives the same
 * reply.
 */
export const redact = (line: string): string => {
  const match = /^(\s*auth[ \t]+[A-Za-z0-9_-]*)(.*)$/is.exec(line)
  if (match === null) return line
  return `${match[1]}${(match[2] ?? "").replace(/[^\u0000-\u0020\u007f]+/g, "***")}`
}

/**
 * Whether a line that follows an AUTH command is to be logged as "***": a client that pipelines
 * its credentials sends them even when the AUTH is refused, and they then arrive as lines that
 * are no command. Any such line is answered as an unknown command whatever it says, so "***"
 * replays to the same reply.
 */
export const hidesCredentials = (afterAuth: boolean, line: string): boolean =>
  afterAuth && Command.parse(line, { smtputf8: false })._tag === "Unknown"

const timeoutOf = (options: SessionOptions, phase: Event.TimeoutPhase): number => {
  switch (phase) {
    case "command":
      return options.timeouts.command
    case "data-block":
      return options.timeouts.dataBlock
    case "data-end":
      return options.timeouts.dataEnd
  }
}

/** RFC 3848's protocol names: ESMTP, plus S once the session is encrypted, plus A once authenticated. */
const protocolOf = (state: Machine.State): string =>
  `${state.helo?.extended === true ? "ESMTP" : "SMTP"}${state.tls === undefined ? "" : "S"}${
    state.authenticated === undefined ? "" : "A"
  }`

export const run = Effect.fnUntraced(function*(connection: Connection.Connection, options: SessionOptions) {
  const log = yield* EventLog
  const queue = yield* Queue
  const policy = yield* Policy
  const clock = yield* Clock.Clock
  const now = () => clock.currentTimeMillisUnsafe()
  const session = options.id
  const framer = Framer.make(options.limits)
  let state = Machine.initial(options.settings)
  let pending = ""
  let txn: QueueTxn | undefined
  let keepContent = false
  let contentBytes = 0
  let closeReason: Event.SessionCloseReason | undefined
  /** The last command ended a pipelined group: write its replies before reading on. */
  let flushNow = false
  /** The header block of the message being received, for the data stage's rules. */
  let headers: Headers.Collector | undefined
  /** The last lines were an AUTH command and what followed it unrecognised (see hidesCredentials). */
  let afterAuth = false
  /** What the AUTH exchange has given so far; never logged, dropped once checked. */
  let credentials: { user?: string; password?: string } = {}
  /** A decision whose rules need I/O, run by the Decide action's `perform`. */
  let decisionInFlight: { readonly stage: Event.PolicyStage; readonly effect: Effect.Effect<Rule.Decision> } | undefined

  const flush = Effect.suspend(() => {
    if (pending.length === 0) return Effect.void
    const text = pending
    pending = ""
    return connection.write(text)
  })

  /** The DKIM-Signature of the message being committed, when it is ours to sign (From in the key's domain). */
  const signature = Effect.suspend(() => {
    const open = signer
    signer = undefined
    if (open === undefined) return Effect.succeed("")
    if (fromDomain !== open.key.domain) {
      open.abort()
      return Effect.succeed("")
    }
    return Effect.promise(() => open.end()).pipe(Effect.map((field) => field ?? ""))
  })

  /** The Authentication-Results field of the message being committed, when it was checked. */
  const authenticationResults = (): string => (messageOutcome === undefined ? "" : `${messageOutcome.header}\r\n`)

  const abortTransaction = Effect.suspend(() => {
    verifier?.abort()
    verifier = undefined
    signer?.abort()
    signer = undefined
    const open = txn
    txn = undefined
    return open === undefined ? Effect.void : open.abort
  })

  const openTransaction = Effect.suspend(() => queue.begin()).pipe(
    Effect.flatMap((opened) => {
      txn = opened
      contentBytes = 0
      const recipients = state.transaction?.recipients ?? []
      const header = Received.format({
        helo: state.helo?.domain,
        clientName: options.clientName,
        clientAddress: options.peer.address,
        hostname: options.settings.hostname,
        protocol: protocolOf(state),
        tlsComment: state.tls === undefined ? undefined : Handshake.receivedComment(state.tls),
        queueId: opened.queueId,
        recipient: recipients.length === 1 ? recipients[0] : undefined,
        at: now()
      })
      // RFC 7208 9.1: Received-SPF goes above the Received field this server adds.
      const spfHeader = spfOutcome === undefined ? "" : `${spfOutcome.header}\r\n`
      return opened.write(encoder.encode(spfHeader + header))
    }),
    // Without its trace header the content must not be committed: drop the transaction, and
    // the commit at the content's end answers 451.
    Effect.catch(() => Effect.andThen(abortTransaction, Effect.sync(() => (keepContent = false))))
  )

  /** The session's facts for the rules the queue asks (postq, delivery); only when there are some. */
  const origin = (): Event.MessageOrigin | undefined =>
    policy.asks("postq") || policy.asks("delivery") ? PolicyContext.origin(connectionFacts, state, currentChecks() ?? {}) : undefined

  /**
   * Uninterruptible from the commit to the reply being gathered: a message the queue has made
   * durable must get its 250 (the session's finalizer writes what is gathered), or the client
   * would send it again.
   */
  const commit = (envelope: Event.Envelope, headers: ReadonlyArray<Headers.Header> | undefined) =>
    Effect.uninterruptible(Effect.suspend(() => {
      const open = txn
      txn = undefined
      const failed = (reason: string) =>
        feed({ _tag: "QueueFailed", reason }, Event.make("QueueFailed", { session, at: now(), reason }))
      const followUp = open === undefined
        ? Effect.sync(() => failed("content could not be spooled"))
        : Effect.flatMap(signature, (signed) =>
          queue.commit(open, envelope, session, signed + authenticationResults() + Headers.format(headers ?? []), origin()).pipe(
            // The queue recorded MessageQueued (durably); it is the Queued input's event.
            Effect.map(({ queueId }) => feed({ _tag: "Queued", queueId }, undefined)),
            Effect.catch((error) => Effect.sync(() => failed(error.message)))
          ))
      return Effect.flatMap(followUp, perform)
    }))

  /**
   * The plaintext that came after STARTTLS is dropped unread (CVE-2011-0411): from the framer
   * and from the connection's own buffer; what is still in the kernel reaches OpenSSL as a bad
   * record and fails the handshake. The 220 is written first, in plaintext.
   */
  const startTls = Effect.andThen(
    flush,
    Effect.suspend(() => {
      // On an implicit TLS listener everything received so far is the start of the handshake.
      const implicit = options.security === "implicit"
      const discardedBytes = implicit ? 0 : framer.discard() + connection.discardPending()
      const started = now()
      log.appendUnsafe(
        Event.make("TlsHandshakeStarted", { session, at: started, mode: implicit ? "implicit" : "starttls", discardedBytes })
      )
      const upgrade = options.tls
      const outcome: Effect.Effect<Result.Result<Event.TlsFacts, HandshakeFailure.HandshakeFailure>> = upgrade === undefined
        ? Effect.succeed(Result.fail({ reason: "other", detail: "no TLS configured for this listener" }))
        : Effect.result(upgrade(connection, implicit ? options.initial : undefined))
      return Effect.flatMap(outcome, (outcome) => {
        const at = now()
        const followUp = outcome._tag === "Success"
          ? feed(
            { _tag: "TlsEstablished", facts: outcome.success },
            Event.make("TlsEstablished", { session, at, facts: outcome.success, durationMs: at - started })
          )
          : feed(
            { _tag: "TlsFailed" },
            Event.make("TlsHandshakeFailed", {
              session,
              at,
              reason: outcome.failure.reason,
              detail: outcome.failure.detail,
              durationMs: at - started
            })
          )
        return perform(followUp)
      })
    })
  )

  const connectionFacts: PolicyContext.Connection = {
    session,
    peer: options.peer,
    local: options.local,
    role: options.role,
    clientName: options.clientName
  }

  /** The decision as the machine's input, recorded as the PolicyDecided event. */
  const decided = (stage: Event.PolicyStage, decision: Rule.Decision): ReadonlyArray<Machine.Action> => {
    const fields = PolicyContext.eventFields(session, now(), stage, decision)
    return feed(PolicyContext.decidedFrom(fields), Event.make("PolicyDecided", fields))
  }

  /** The sender's SPF result of the current transaction, once checked at MAIL. */
  let spfOutcome: Spf.Outcome | undefined
  /** The HELO name's SPF result, checked at MAIL beside the sender's (`spf.helo`). */
  let spfHeloOutcome: Spf.Outcome | undefined
  /** The DKIM/DMARC check of the message streaming in, and its outcome once it has ended. */
  let verifier: MessageAuth.Verifier | undefined
  let messageOutcome: MessageAuth.Outcome | undefined
  /** The DKIM signer of an authenticated client's message from one of our domains. */
  let signer: DkimSign.Signer | undefined
  /** The domain of the From field of the message just received. */
  let fromDomain: string | undefined
  /** The start of the body of the message just received, for rules (when they can look). */
  let messageBody: PolicyContext.Body | undefined

  /** DNS for a check, each answer recorded in the log. */
  const recorded = (resolve: Dns.Resolve): Dns.Resolve =>
    Dns.recording(resolve, (answer) =>
      log.appendUnsafe(Event.make("DnsAnswered", {
        session,
        at: now(),
        name: answer.name,
        type: answer.type,
        ...(answer.records === undefined ? {} : { records: answer.records }),
        ...(answer.error === undefined ? {} : { error: answer.error })
      })))

  /** Starts what reads a message as it streams in: its DKIM signer, its DKIM/DMARC check (each when on). */
  const startMessageChecks = (): void => {
    verifier?.abort()
    verifier = undefined
    messageOutcome = undefined
    messageBody = undefined
    signer?.abort()
    signer = undefined
    fromDomain = undefined
    const transaction = state.transaction
    // Only mail an authenticated client sends from one of our domains is signed: never a
    // message that merely claims the domain.
    const senderDomain = transaction?.from._tag === "Mailbox" ? transaction.from.domain.toLowerCase() : undefined
    const key = state.authenticated === undefined || senderDomain === undefined ? undefined : options.dkimKeys?.get(senderDomain)
    if (key !== undefined) signer = DkimSign.start(key)
    if (options.messageAuth === undefined || transaction === undefined) return
    verifier = MessageAuth.start({
      sender: Address.format(transaction.from),
      ip: options.peer.address,
      helo: state.helo?.domain ?? "",
      hostname: options.settings.hostname,
      resolve: recorded(options.messageAuth.resolve)
    })
  }

  /** The message has ended: its DKIM/DMARC outcome, recorded, before the data stage decides. */
  const finishVerifier = (open: MessageAuth.Verifier) =>
    Effect.promise(() => open.end()).pipe(Effect.map((outcome) => {
      messageOutcome = outcome
      log.appendUnsafe(Event.make("MessageAuthenticated", { session, at: now(), ...outcome }))
    }))

  /** What the session checked of the current transaction; undefined (the common case) when nothing. */
  const currentChecks = (): PolicyContext.Checks | undefined =>
    spfOutcome === undefined && spfHeloOutcome === undefined && messageOutcome === undefined && messageBody === undefined ? undefined : {
      // The same view replay builds from SpfChecked, so rules see the same thing in both.
      spf: PolicyContext.spfView(spfOutcome),
      spfHelo: PolicyContext.spfView(spfHeloOutcome),
      message: messageOutcome === undefined ? undefined : { dkim: messageOutcome.dkim, dmarc: messageOutcome.dmarc, arc: messageOutcome.arc },
      body: messageBody
    }

  /** Asks the rules (and the shadow rules) about a stage, with the context as it stands now. */
  const ask = (decision: Machine.Deciding) => {
    // A stage nothing can refuse is accepted without building the rules' context: the common
    // case, on every command.
    if (!policy.asks(decision.stage, decision.stage !== "rcpt" || decision.local)) return acceptedByDefault
    const context = PolicyContext.make(connectionFacts, state, decision, now(), currentChecks())
    shadow(decision.stage, context)
    return policy.decide(context)
  }

  /**
   * Checks SPF for the sender of a MAIL command (identity "mail") or for the HELO name (identity
   * "helo", as the null sender: RFC 7208 2.3), recording every DNS answer and the outcome.
   */
  const checkSpf = (identity: "mail" | "helo", sender: string, helo: string, spf: NonNullable<SessionOptions["spf"]>) => {
    // A client repeating MAIL for the same sender is answered from the session's last check: a
    // MAIL/RSET loop must not turn into DNS traffic and DnsAnswered records. The HELO identity
    // is the null sender's check, so the two share their answer.
    const key = `${sender}\u0000${helo}`
    const again = spfChecks.get(key)
    const checked = again !== undefined
      ? Effect.succeed(again)
      : Effect.promise(() =>
        Spf.check({ sender, ip: options.peer.address, helo, hostname: options.settings.hostname, timeout: spf.timeout, resolve: recorded(spf.resolve) })
      )
    return checked.pipe(Effect.map((outcome) => {
      if (spfChecks.size >= 16) spfChecks.clear()
      spfChecks.set(key, outcome)
      if (identity === "mail") spfOutcome = outcome
      else spfHeloOutcome = outcome
      log.appendUnsafe(Event.make("SpfChecked", {
        session,
        at: now(),
        ...(identity === "helo" ? { identity } : {}),
        result: outcome.result,
        domain: outcome.domain,
        header: outcome.header,
        ...(outcome.comment === undefined ? {} : { comment: outcome.comment })
      }))
    }))
  }
  const spfChecks = new Map<string, Spf.Outcome>()

  /** The checks a stage's rules need done first, if any: SPF (both identities) at mail, DKIM and DMARC at data. */
  const factsFor = (decision: Machine.Deciding): Effect.Effect<void> | undefined => {
    const spf = options.spf
    if (decision.stage === "mail" && spf !== undefined) {
      // Both identities at MAIL, not before the EHLO reply: no client waits on DNS to be greeted.
      const helo = state.helo?.domain ?? ""
      spfHeloOutcome = undefined
      const sender = Address.format(decision.transaction.from)
      const mail = checkSpf("mail", sender, helo, spf)
      if (spf.helo !== true || !Spf.isCheckableHelo(helo)) return mail
      // The null sender's check is the HELO identity's: after it, that one is answered from it.
      return sender === ""
        ? Effect.andThen(mail, checkSpf("helo", "", helo, spf))
        : Effect.all([checkSpf("helo", "", helo, spf), mail], { concurrency: 2, discard: true })
    }
    const open = verifier
    if (decision.stage !== "data" || open === undefined) return undefined
    verifier = undefined
    return finishVerifier(open)
  }

  /** The shadow rules' decision, recorded only; one that needs I/O is recorded when it is done. */
  const shadowAsked = new Map<Event.PolicyStage, number>()
  const shadow = (stage: Event.PolicyStage, context: Rule.Context): void => {
    const outcome = policy.shadow(context)
    if (outcome === undefined) return
    const index = shadowAsked.get(stage) ?? 0
    shadowAsked.set(stage, index + 1)
    const record = (decision: Rule.Decision) =>
      log.appendUnsafe(Event.make("ShadowDecided", { ...PolicyContext.eventFields(session, now(), stage, decision), index }))
    if (Effect.isEffect(outcome)) Effect.runFork(Effect.map(outcome, record))
    else record(outcome)
  }

  /**
   * Records the input's event, steps the machine and does at once what needs no I/O (replies
   * are collected, framer modes switched); returns the actions that do need I/O, so that a
   * command answered from memory costs no Effect at all.
   */
  const feed = (input: Machine.Input, event: Event.Event | undefined): ReadonlyArray<Machine.Action> => {
    if (event !== undefined) log.appendUnsafe(event)
    const next = Machine.step(state, input)
    state = next.state
    if (next.flush) flushNow = true
    let effectful: Array<Machine.Action> | undefined
    for (const action of next.actions) {
      switch (action._tag) {
        case "Reply": {
          pending += Reply.format(action.reply)
          const { code, enhanced, lines } = action.reply
          log.appendUnsafe(
            Event.make("ReplySent", { session, at: now(), code, lines, ...(enhanced === undefined ? {} : { enhanced }) })
          )
          break
        }
        case "ReadData":
          framer.expectData()
          keepContent = true
          headers = Headers.collector(policy.bodyLimit)
          startMessageChecks()
          ;(effectful ??= []).push(action)
          break
        case "ReadBdat":
          framer.expectBdat(action.size, action.first)
          keepContent = action.keep
          if (action.first) headers = action.keep ? Headers.collector(policy.bodyLimit) : undefined
          if (action.first && action.keep) startMessageChecks()
          if (action.first && action.keep) (effectful ??= []).push(action)
          break
        case "Close":
          closeReason = action.reason
          break
        case "DecodeAuth": {
          const decoded = Sasl.decode(action.step, action.response)
          credentials = decoded.outcome !== "answer" ? {} : {
            ...credentials,
            ...(decoded.user === undefined ? {} : { user: decoded.user }),
            ...(decoded.password === undefined ? {} : { password: decoded.password })
          }
          const more = feed(
            { _tag: "AuthDecoded", outcome: decoded.outcome },
            Event.make("AuthResponseReceived", { session, at: now(), outcome: decoded.outcome })
          )
          if (more.length > 0) (effectful ??= []).push(...more)
          break
        }
        case "VerifyAuth":
          ;(effectful ??= []).push(action)
          break
        case "Decide": {
          // Synchronous rules are decided here, without an Effect; the machine steps on at once.
          // A stage whose facts need DNS first (SPF at mail, DKIM/DMARC at data) is decided in
          // the Decide action's perform.
          const decision = action.decision
          const facts = factsFor(decision)
          const outcome = facts === undefined
            ? ask(decision)
            : Effect.flatMap(facts, () => {
              const asked = ask(decision)
              return Effect.isEffect(asked) ? asked : Effect.succeed(asked)
            })
          if (Effect.isEffect(outcome)) {
            decisionInFlight = { stage: decision.stage, effect: outcome }
            ;(effectful ??= []).push(action)
          } else {
            const more = decided(decision.stage, outcome)
            if (more.length > 0) (effectful ??= []).push(...more)
          }
          break
        }
        case "Commit":
        case "Abort":
        case "StartTls":
          ;(effectful ??= []).push(action)
          break
      }
    }
    return effectful ?? noActions
  }

  /** Checks the credentials; a failure answers only after the tarpit delay. */
  const verifyAuth = (mechanism: Event.AuthMechanism, failures: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      const { user, password } = credentials
      credentials = {}
      const verified: Effect.Effect<string | undefined> = user === undefined || password === undefined
        ? Effect.succeed(undefined)
        : Effect.promise(() => options.auth.verify(user, password).catch(() => undefined))
      return Effect.flatMap(verified, (verified) => {
        const answer = Effect.suspend(() => {
          const followUp = verified === undefined
            ? feed(
              { _tag: "AuthVerified", user: undefined },
              Event.make("AuthFailed", { session, at: now(), mechanism, failures: failures + 1 })
            )
            : feed({ _tag: "AuthVerified", user: verified }, Event.make("AuthSucceeded", { session, at: now(), mechanism, user: verified }))
          return perform(followUp)
        })
        return verified === undefined
          ? Effect.andThen(Effect.sleep(authFailureDelay(options.auth.failureDelay, failures)), answer)
          : answer
      })
    })

  const decideInFlight: Effect.Effect<void> = Effect.suspend(() => {
    const inFlight = decisionInFlight
    decisionInFlight = undefined
    if (inFlight === undefined) return Effect.void
    return Effect.flatMap(inFlight.effect, (decision) => {
      const more = decided(inFlight.stage, decision)
      return perform(more)
    })
  })

  const perform = (actions: ReadonlyArray<Machine.Action>): Effect.Effect<void> =>
    actions.length === 0 ? Effect.void : Effect.forEach(actions, (action) => {
      switch (action._tag) {
        case "ReadData":
        case "ReadBdat":
          return openTransaction
        case "Commit":
          return commit(action.envelope, action.headers)
        case "Abort":
          return abortTransaction
        case "StartTls":
          return startTls
        case "Decide":
          return decideInFlight
        case "VerifyAuth":
          return verifyAuth(action.mechanism, action.failures)
        default:
          return Effect.void
      }
    }, { discard: true })

  /** Handles one framed unit; returns an Effect only when there is I/O to do. */
  const handle = (unit: Framer.Framed): Effect.Effect<void> | undefined => {
    switch (unit._tag) {
      case "Line": {
        const text = decoder.decode(unit.bytes)
        const flaw = unit.flaw
        // A line inside an AUTH exchange is credentials, whatever it looks like; so are lines
        // that are no command right after an AUTH that was refused.
        const hidden = state.reading._tag === "AuthResponse" || hidesCredentials(afterAuth, text)
        const event = Event.make("CommandReceived", {
          session,
          at: now(),
          line: hidden ? "***" : redact(text),
          ...(flaw === undefined ? {} : { flaw })
        })
        const effects = effectsOf(feed({ _tag: "Line", text, flaw }, event))
        afterAuth = /^\s*auth(\s|$)/i.test(text) || (afterAuth && hidden)
        return effects
      }
      case "LineTooLong":
      case "LineFlood":
      case "TlsRecord": {
        const reason = unit._tag === "LineTooLong" ? "too-long" : unit._tag === "LineFlood" ? "flood" : "tls-record"
        return effectsOf(feed({ _tag: unit._tag }, Event.make("LineRejected", { session, at: now(), reason })))
      }
      case "Content": {
        contentBytes += unit.bytes.length
        const open = txn
        if (!keepContent || open === undefined) return undefined
        headers?.push(unit.bytes)
        verifier?.write(unit.bytes)
        signer?.write(unit.bytes)
        if (contentBytes > options.settings.maxMessageSize) {
          keepContent = false
          return abortTransaction
        }
        return open.write(unit.bytes).pipe(
          Effect.catch(() => Effect.andThen(abortTransaction, Effect.sync(() => (keepContent = false))))
        )
      }
      case "ContentEnd": {
        const bare = unit.bareLineEnding
        // A whole message's header fields go to the data stage (and its record, for replay).
        const reading = state.reading
        const whole = keepContent && (reading._tag === "Data" || (reading._tag === "Bdat" && reading.last))
        const fields = whole ? headers?.headers() : undefined
        messageBody = whole && policy.bodyLimit > 0 ? headers?.body() : undefined
        if (whole) headers = undefined
        // Only a message being signed needs its From domain.
        if (fields !== undefined && signer !== undefined) fromDomain = Headers.addressDomain(Headers.first(fields, "from"))
        const event = Event.make("ContentReceived", {
          session,
          at: now(),
          size: unit.size,
          ...(bare === undefined ? {} : { bareLineEnding: bare }),
          ...(fields === undefined ? {} : { headers: fields })
        })
        return effectsOf(feed({ _tag: "ContentEnd", size: unit.size, bareLineEnding: bare, headers: fields }, event))
      }
    }
  }

  const effectsOf = (actions: ReadonlyArray<Machine.Action>): Effect.Effect<void> | undefined =>
    actions.length === 0 ? undefined : perform(actions)

  log.appendUnsafe(
    Event.make("SessionOpened", {
      session,
      at: now(),
      settingsDigest: options.settingsDigest,
      role: options.role,
      peer: options.peer,
      local: options.local,
      admission: options.admission,
      security: options.security,
      ...(options.auth.offered ? { auth: true } : {}),
      ...(options.proxiedBy === undefined ? {} : { proxiedBy: options.proxiedBy }),
      ...(options.clientName === undefined ? {} : { clientName: options.clientName })
    })
  )

  /**
   * Serves what the framer holds and reads on, until the machine closes the session. Built from
   * combinators rather than a generator: a generator function made per session gets its own
   * V8 map, allocated in old space and pointing back at the session, and that kept every
   * session's objects alive through the young generation's collections (see bench/README.md).
   */
  const serve: Effect.Effect<void> = Effect.suspend(() => {
    while (closeReason === undefined) {
      // The last unit ended a pipelined group: its replies go out before anything is read on.
      if (flushNow) {
        flushNow = false
        return flushThenServe
      }
      const unit = framer.next()
      if (unit === undefined) return flushThenRead
      const effect = handle(unit)
      if (effect !== undefined) return Effect.andThen(effect, serve)
    }
    return Effect.void
  })

  const onRead = (chunk: Connection.ReadResult | typeof Connection.TimedOut): Effect.Effect<void> => {
    if (chunk === Connection.TimedOut) {
      // The phase the read began in: only this fiber feeds the machine, and it was waiting.
      const phase = Machine.timeoutPhase(state)
      return Effect.andThen(perform(feed({ _tag: "TimedOut", phase }, Event.make("TimedOut", { session, at: now(), phase }))), serve)
    }
    if (chunk === Connection.Signalled) {
      if (!options.shuttingDown()) return serve
      return Effect.andThen(perform(feed({ _tag: "Shutdown" }, Event.make("ShutdownRequested", { session, at: now() }))), serve)
    }
    if (chunk === undefined) {
      closeReason = "peer-closed"
      return Effect.void
    }
    framer.push(chunk)
    return serve
  }
  const readNext: Effect.Effect<void> = Effect.suspend(() =>
    Effect.flatMap(connection.readWithin(timeoutOf(options, Machine.timeoutPhase(state))), onRead)
  )
  // Made once per session: the loop goes round them for every command.
  const flushThenRead = Effect.andThen(flush, readNext)
  const flushThenServe = Effect.andThen(flush, serve)

  const loop = Effect.suspend(() => {
    if (options.initial !== undefined && options.initial.length > 0 && options.security !== "implicit") {
      framer.push(options.initial)
    }
    const connected = feed(
      { _tag: "Connected", admission: options.admission, security: options.security, auth: options.auth.offered },
      undefined
    )
    return Effect.andThen(perform(connected), serve)
  })

  const closeSession = abortTransaction.pipe(
    Effect.andThen(flush),
    Effect.andThen(connection.close),
    Effect.andThen(
      Effect.sync(() => log.appendUnsafe(Event.make("SessionClosed", { session, at: now(), reason: closeReason ?? "io-error" })))
    )
  )

  yield* Effect.ensuring(loop, closeSession)
})

const noActions: ReadonlyArray<Machine.Action> = []
