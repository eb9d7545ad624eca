/**
 * The SMTP session as a pure state machine: `step(state, input) → { state, actions }`.
 *
 * All of RFC 5321's sequencing, the limits and the choice of every reply live here. What the
 * outside world says (a line arrived, the content ended, the queue stored the message, a
 * timer fired, the daemon is stopping) comes in as an input, so the machine never waits and a
 * recorded session can be fed through it again (`postern replay --verify`). Pure: no I/O.
 *
 * Policy works the same way: at each stage (connect, helo, mail, rcpt, data) the machine asks
 * with a `Decide` action and waits in `Deciding` for the `Decided` input, so the rules stay
 * outside and a replay feeds back the recorded decisions.
 */
import type * as Event from "../log/Event.ts"
import * as Address from "./Address.ts"
import * as Command from "./Command.ts"
import type * as Headers from "./Headers.ts"
import type * as Framer from "./Framer.ts"
import * as Protocol from "./Protocol.ts"
import * as Reply from "./Reply.ts"
import * as Sasl from "./Sasl.ts"

export type Input =
  | {
    readonly _tag: "Connected"
    readonly admission: Event.Admission
    readonly security: Event.Security
    /** The listener offers AUTH. */
    readonly auth: boolean
  }
  | { readonly _tag: "Line"; readonly text: string; readonly flaw: Framer.LineFlaw | undefined }
  | { readonly _tag: "LineTooLong" }
  | { readonly _tag: "LineFlood" }
  /** A TLS handshake record arrived where a command should start (see Framer). */
  | { readonly _tag: "TlsRecord" }
  /** The handshake after STARTTLS (or on an implicit TLS listener) succeeded. */
  | { readonly _tag: "TlsEstablished"; readonly facts: Event.TlsFacts }
  | { readonly _tag: "TlsFailed" }
  | {
    readonly _tag: "ContentEnd"
    readonly size: number
    readonly bareLineEnding: "lf" | "cr" | undefined
    /** The header fields of the whole message, for the data stage's rules (see Headers). */
    readonly headers?: ReadonlyArray<Headers.Header> | undefined
  }
  | { readonly _tag: "Queued"; readonly queueId: string }
  | { readonly _tag: "QueueFailed"; readonly reason: string }
  | { readonly _tag: "TimedOut"; readonly phase: Event.TimeoutPhase }
  | { readonly _tag: "Shutdown" }
  /** The policy's verdict on the stage the machine asked about; `reply` for all but accept. */
  | {
    readonly _tag: "Decided"
    readonly stage: Event.PolicyStage
    readonly verdict: Event.PolicyDecided["verdict"]
    readonly reply: Reply.Reply | undefined
    /** Header fields to add to an accepted message (data stage). */
    readonly headers?: ReadonlyArray<Headers.Header> | undefined
    /** With verdict "quarantine": the quarantine the message goes to. */
    readonly quarantine?: string | undefined
  }
  /** What the client's AUTH response meant (the session decoded it; see Sasl). */
  | { readonly _tag: "AuthDecoded"; readonly outcome: Event.AuthResponseReceived["outcome"] }
  /** The credentials' check: the user, or undefined when they did not match. */
  | { readonly _tag: "AuthVerified"; readonly user: string | undefined }

export type Action =
  | { readonly _tag: "Reply"; readonly reply: Reply.Reply }
  /** Frame what follows as DATA content and open a spool transaction for it. */
  | { readonly _tag: "ReadData" }
  /** Frame the next `size` bytes as a BDAT chunk; `first` opens the spool transaction. */
  | { readonly _tag: "ReadBdat"; readonly size: number; readonly first: boolean; readonly keep: boolean }
  /** Make the content durable and queue it; answer with a Queued or QueueFailed input. */
  | {
    readonly _tag: "Commit"
    readonly envelope: Event.Envelope
    /** Header fields the rules add, delivered above the message. */
    readonly headers?: ReadonlyArray<Headers.Header> | undefined
  }
  /** Drop the content received so far. */
  | { readonly _tag: "Abort" }
  /**
   * Drop any plaintext already received, then run the server side of the TLS handshake; answer
   * with a TlsEstablished or TlsFailed input.
   */
  | { readonly _tag: "StartTls" }
  /** Decode this AUTH response (Sasl.decode) and answer with AuthDecoded; keep the credentials. */
  | { readonly _tag: "DecodeAuth"; readonly step: Sasl.Step; readonly response: string }
  /** Check the credentials the exchange gave against the users; answer with AuthVerified. */
  | { readonly _tag: "VerifyAuth"; readonly mechanism: Sasl.Mechanism; readonly failures: number }
  /** Ask the policy about the stage in `state.reading` (see `Deciding`); answer with Decided. */
  | { readonly _tag: "Decide"; readonly decision: Deciding }
  | { readonly _tag: "Close"; readonly reason: Event.SessionCloseReason }

/** What the machine waits for the policy to decide, with what it does once accepted. */
export type Deciding =
  | { readonly stage: "connect" }
  | { readonly stage: "helo"; readonly helo: { readonly extended: boolean; readonly domain: string }; readonly reply: Reply.Reply }
  | { readonly stage: "auth"; readonly user: string; readonly mechanism: Sasl.Mechanism }
  | { readonly stage: "mail"; readonly transaction: Transaction }
  | { readonly stage: "rcpt"; readonly recipient: string; readonly local: boolean }
  | {
    readonly stage: "data"
    readonly envelope: Event.Envelope
    readonly size: number
    readonly headers: ReadonlyArray<Headers.Header>
  }

export interface Transaction {
  readonly from: Address.ReversePath
  readonly parameters: Command.MailParameters
  /** Accepted recipients in RFC 5321 form, in order. */
  readonly recipients: ReadonlyArray<string>
  /** BDAT chunks have started (DATA is no longer allowed in this transaction). */
  readonly chunking: boolean
}

/** What the session is reading at the moment, which decides the timeout that applies. */
export type Reading =
  | { readonly _tag: "Commands" }
  | { readonly _tag: "Data" }
  /** A BDAT chunk; `reply` is the error to give at its end when the chunk is consumed only to stay in sync. */
  | { readonly _tag: "Bdat"; readonly last: boolean; readonly reply: Reply.Reply | undefined }
  /** The content is complete and the queue is storing it. */
  | { readonly _tag: "Queueing" }
  /** A TLS handshake is under way. */
  | { readonly _tag: "Handshake" }
  /** The policy is deciding a stage. */
  | { readonly _tag: "Deciding"; readonly decision: Deciding }
  /** An AUTH exchange: waiting for the client's response, its decoding, or the check. */
  | { readonly _tag: "AuthResponse"; readonly mechanism: Sasl.Mechanism; readonly step: Sasl.Step }
  | { readonly _tag: "AuthDecoding"; readonly mechanism: Sasl.Mechanism; readonly step: Sasl.Step }
  | { readonly _tag: "AuthVerifying"; readonly mechanism: Sasl.Mechanism }

export interface State {
  readonly settings: Event.MachineSettings
  readonly greeted: boolean
  readonly closed: boolean
  /** The listener's TLS level. */
  readonly security: Event.Security
  /** The TLS session's facts once the connection is encrypted. */
  readonly tls: Event.TlsFacts | undefined
  readonly helo: { readonly extended: boolean; readonly domain: string } | undefined
  readonly transaction: Transaction | undefined
  readonly reading: Reading
  readonly errors: number
  /** SIGTERM arrived while a message was in flight: close once it is answered. */
  readonly draining: boolean
  /** The listener offers AUTH. */
  readonly authOffered: boolean
  /** The user AUTH established, if any. */
  readonly authenticated: string | undefined
  /** Failed AUTH attempts in this session. */
  readonly authFailures: number
}

export interface Step {
  readonly state: State
  readonly actions: ReadonlyArray<Action>
  /**
   * The command ends a pipelined group (RFC 2920: EHLO, DATA, QUIT, NOOP...): the client
   * waits for the replies gathered so far, so they are written now rather than with the
   * replies to whatever follows. Not an action: it changes when bytes are written, never what.
   */
  readonly flush: boolean
}

export const initial = (settings: Event.MachineSettings): State => ({
  settings,
  greeted: false,
  closed: false,
  security: "none",
  tls: undefined,
  helo: undefined,
  transaction: undefined,
  reading: { _tag: "Commands" },
  errors: 0,
  draining: false,
  authOffered: false,
  authenticated: undefined,
  authFailures: 0
})

/**
 * Whether the session is encrypted (STARTTLS done, or an implicit TLS listener): what policy
 * asks before accepting mail from a client that should have used TLS. The facts themselves
 * (version, cipher, SNI, resumed, client certificate) are `state.tls`.
 */
export const isSecured = (state: State): boolean => state.tls !== undefined

/** The timeout phase that applies while in this state (RFC 5321 4.5.3.2). */
export const timeoutPhase = (state: State): Event.TimeoutPhase => {
  switch (state.reading._tag) {
    case "Commands":
    case "Handshake":
    case "AuthResponse":
    case "AuthDecoding":
    case "AuthVerifying":
      return "command"
    case "Data":
    case "Bdat":
      return "data-block"
    case "Queueing":
      return "data-end"
    case "Deciding":
      return state.reading.decision.stage === "data" ? "data-end" : "command"
  }
}

const reply = (code: number, enhanced: string | undefined, text: string): ReplyAction => ({
  _tag: "Reply",
  reply: Reply.make(code, enhanced, text)
})

type ReplyAction = Extract<Action, { readonly _tag: "Reply" }>

const close = (reason: Event.SessionCloseReason): Action => ({ _tag: "Close", reason })

const done = (state: State, ...actions: ReadonlyArray<Action>): Step => ({ state, actions, flush: false })

const replies = {
  ok: reply(250, "2.0.0", "Ok"),
  bye: reply(221, "2.0.0", "Bye"),
  needHelo: reply(503, "5.5.1", "Error: send HELO/EHLO first"),
  needMail: reply(503, "5.5.1", "Error: need MAIL command"),
  nestedMail: reply(503, "5.5.1", "Error: nested MAIL command"),
  noRecipients: reply(554, "5.5.1", "Error: no valid recipients"),
  dataAfterBdat: reply(503, "5.5.1", "Error: DATA not allowed after BDAT"),
  binaryNeedsBdat: reply(503, "5.5.1", "Error: BINARYMIME requires BDAT"),
  tooManyRecipients: reply(452, "4.5.3", "Error: too many recipients"),
  tooBig: reply(552, "5.3.4", "Error: message file too big"),
  vrfy: reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"),
  notImplemented: reply(502, "5.5.1", "Error: command not implemented"),
  authNotEnabled: reply(503, "5.5.1", "Error: authentication not enabled"),
  authNeedsTls: reply(538, "5.7.11", "Encryption required for requested authentication mechanism"),
  authNeedsEhlo: reply(503, "5.5.1", "Error: send EHLO first"),
  authAgain: reply(503, "5.5.1", "Error: already authenticated"),
  authInTransaction: reply(503, "5.5.1", "Error: MAIL transaction in progress"),
  authMechanism: reply(504, "5.5.4", "Error: unsupported authentication mechanism"),
  authCancelled: reply(501, "5.7.0", "Authentication cancelled"),
  authMalformed: reply(501, "5.5.2", "Error: cannot decode the authentication response"),
  authLineTooLong: reply(500, "5.5.6", "Authentication Exchange line is too long"),
  authFailed: reply(535, "5.7.8", "Error: authentication failed"),
  authSucceeded: reply(235, "2.7.0", "Authentication successful"),
  help: reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321"),
  startData: reply(354, undefined, "End data with <CR><LF>.<CR><LF>"),
  queueFailed: reply(451, "4.3.0", "Error: queue file write error"),
  lineTooLong: reply(500, "5.5.2", "Error: line too long"),
  bareLf: reply(500, "5.5.2", "Error: bare <LF> received"),
  bareCr: reply(500, "5.5.2", "Error: bare <CR> received"),
  nul: reply(500, "5.5.2", "Error: NUL character received"),
  tlsRecord: reply(500, "5.5.1", "Error: TLS handshake on a plaintext connection; use STARTTLS or the implicit TLS port"),
  readyTls: reply(220, "2.0.0", "Ready to start TLS"),
  tlsActive: reply(554, "5.5.1", "Error: TLS already active"),
  tlsInTransaction: reply(503, "5.5.1", "Error: MAIL transaction in progress"),
  mustStartTls: reply(530, "5.7.0", "Must issue a STARTTLS command first"),
  bareLfContent: reply(550, "5.5.2", "Error: bare <LF> received in message content"),
  bareCrContent: reply(550, "5.5.2", "Error: bare <CR> received in message content")
} as const

const serviceReply = (state: State, code: number, enhanced: string, text: string): Action =>
  reply(code, enhanced, `${state.settings.hostname} ${text}`)

const resetTransaction = (state: State): State => ({ ...state, transaction: undefined, reading: { _tag: "Commands" } })

/** Chunks already spooled for the transaction a command drops must be discarded with it. */
const dropChunks = (state: State): ReadonlyArray<Action> =>
  state.transaction?.chunking === true ? [{ _tag: "Abort" }] : []

/** Counts a rejected command; past the limit the session ends with 421 (Postfix's hard error limit). */
const rejected = (state: State, action: Action, counts: boolean): Step => {
  if (!counts) return done(state, action)
  const errors = state.errors + 1
  if (errors < state.settings.maxErrors) return done({ ...state, errors }, action)
  return done(
    { ...state, errors, closed: true },
    action,
    serviceReply(state, 421, "4.7.0", "Error: too many errors"),
    close("error-limit")
  )
}

export const step = (state: State, input: Input): Step => {
  if (state.closed) return done(state)
  switch (input._tag) {
    case "Connected":
      return connected({ ...state, security: input.security, authOffered: input.auth }, input.admission)
    case "Line":
      return line(state, input.text, input.flaw)
    case "LineTooLong":
      if (state.reading._tag === "AuthResponse") return rejected(commandsAgain(state), replies.authLineTooLong, true)
      return rejected(state, replies.lineTooLong, true)
    case "LineFlood":
      return done({ ...state, closed: true }, replies.lineTooLong, close("protocol"))
    case "TlsRecord":
      return done({ ...state, closed: true }, replies.tlsRecord, close("protocol"))
    case "TlsEstablished":
      return tlsEstablished(state, input.facts)
    case "TlsFailed":
      return done({ ...resetTransaction(state), closed: true }, close("tls-failed"))
    case "ContentEnd":
      return contentEnd(state, input.size, input.bareLineEnding, input.headers ?? [])
    case "Queued":
      return queued(state, reply(250, "2.0.0", `Ok: queued as ${input.queueId}`))
    case "QueueFailed":
      return queued(state, replies.queueFailed)
    case "TimedOut": {
      const abort: ReadonlyArray<Action> = state.reading._tag === "Commands" ? [] : [{ _tag: "Abort" }]
      return done(
        { ...resetTransaction(state), closed: true },
        ...abort,
        serviceReply(state, 421, "4.4.2", "Error: timeout exceeded"),
        close("timeout")
      )
    }
    case "Shutdown":
      if ((state.reading._tag === "Commands" || state.reading._tag === "AuthResponse") && state.greeted) {
        return shutdownNow(state)
      }
      return done({ ...state, draining: true })
    case "Decided":
      return decided(state, input)
    case "AuthDecoded":
      return authDecoded(state, input.outcome)
    case "AuthVerified":
      return authVerified(state, input.user)
  }
}

const commandsAgain = (state: State): State => ({ ...state, reading: { _tag: "Commands" } })

/** AUTH is offered when the listener has it, and the session is encrypted or plaintext is allowed. */
const offersAuth = (state: State): boolean =>
  state.authOffered && (state.tls !== undefined || state.settings.authPlaintext === true)

const auth = (state: State, mechanism: string, initialResponse: string | undefined, counts: boolean): Step => {
  if (!state.authOffered) return rejected(state, replies.authNotEnabled, counts)
  if (!offersAuth(state)) return rejected(state, replies.authNeedsTls, counts)
  if (state.helo?.extended !== true) return rejected(state, replies.authNeedsEhlo, counts)
  if (state.authenticated !== undefined) return rejected(state, replies.authAgain, counts)
  if (state.transaction !== undefined) return rejected(state, replies.authInTransaction, counts)
  if (!Sasl.isMechanism(mechanism)) return rejected(state, replies.authMechanism, counts)
  const step = Sasl.firstStep(mechanism)
  if (initialResponse !== undefined) {
    return done({ ...state, reading: { _tag: "AuthDecoding", mechanism, step } }, { _tag: "DecodeAuth", step, response: initialResponse })
  }
  return done({ ...state, reading: { _tag: "AuthResponse", mechanism, step } }, reply(334, undefined, Sasl.challenge(step)))
}

const authResponse = (state: State, text: string): Step => {
  const reading = state.reading
  if (reading._tag !== "AuthResponse") return done(state)
  return done(
    { ...state, reading: { _tag: "AuthDecoding", mechanism: reading.mechanism, step: reading.step } },
    { _tag: "DecodeAuth", step: reading.step, response: text }
  )
}

const authDecoded = (state: State, outcome: Event.AuthResponseReceived["outcome"]): Step => {
  const reading = state.reading
  if (reading._tag !== "AuthDecoding") return done(state)
  switch (outcome) {
    case "cancel":
      return done(commandsAgain(state), replies.authCancelled)
    case "malformed":
      return rejected(commandsAgain(state), replies.authMalformed, true)
    case "answer":
      if (reading.step === "login-username") {
        return done(
          { ...state, reading: { _tag: "AuthResponse", mechanism: reading.mechanism, step: "login-password" } },
          reply(334, undefined, Sasl.challenge("login-password"))
        )
      }
      return done(
        { ...state, reading: { _tag: "AuthVerifying", mechanism: reading.mechanism } },
        { _tag: "VerifyAuth", mechanism: reading.mechanism, failures: state.authFailures }
      )
  }
}

const authVerified = (state: State, user: string | undefined): Step => {
  const reading = state.reading
  if (reading._tag !== "AuthVerifying") return done(state)
  if (user !== undefined) return decide(commandsAgain(state), { stage: "auth", user, mechanism: reading.mechanism })
  const failures = state.authFailures + 1
  const failed: State = { ...commandsAgain(state), authFailures: failures }
  if (failures < (state.settings.authMaxFailures ?? 3)) return done(failed, replies.authFailed)
  return done(
    { ...failed, closed: true },
    replies.authFailed,
    serviceReply(state, 421, "4.7.0", "Error: too many authentication failures"),
    close("auth-failures")
  )
}

const decide = (state: State, decision: Deciding): Step =>
  done({ ...state, reading: { _tag: "Deciding", decision } }, { _tag: "Decide", decision })

const policyClosing = reply(421, "4.7.0", "Error: closing connection")

const decided = (state: State, input: Extract<Input, { readonly _tag: "Decided" }>): Step => {
  const reading = state.reading
  if (reading._tag !== "Deciding" || reading.decision.stage !== input.stage) return done(state)
  const decision = reading.decision
  const commands: State = { ...state, reading: { _tag: "Commands" } }
  const refusal: ReplyAction = input.reply === undefined ? policyClosing : { _tag: "Reply", reply: input.reply }
  if (input.verdict === "disconnect" || (decision.stage === "connect" && input.verdict !== "accept")) {
    const abort: ReadonlyArray<Action> = decision.stage === "data" ? [{ _tag: "Abort" }] : []
    return done({ ...resetTransaction(state), closed: true }, ...abort, refusal, close("policy"))
  }
  const accepted = input.verdict === "accept" || input.verdict === "quarantine"
  switch (decision.stage) {
    case "connect":
      return greeting(commands)
    case "helo":
      return accepted
        ? done({ ...commands, helo: decision.helo }, { _tag: "Reply", reply: decision.reply })
        : rejected({ ...commands, helo: undefined }, refusal, true)
    case "auth":
      return accepted ? done({ ...commands, authenticated: decision.user }, replies.authSucceeded) : rejected(commands, refusal, true)
    case "mail":
      return accepted
        ? done({ ...commands, transaction: decision.transaction }, reply(250, "2.1.0", "Ok"))
        : rejected(commands, refusal, true)
    case "rcpt": {
      const transaction = commands.transaction
      if (!accepted || transaction === undefined) return rejected(commands, refusal, true)
      const recipients = [...transaction.recipients, decision.recipient]
      return done({ ...commands, transaction: { ...transaction, recipients } }, reply(250, "2.1.5", "Ok"))
    }
    case "data":
      return accepted
        ? done({ ...state, reading: { _tag: "Queueing" } }, {
          _tag: "Commit",
          envelope: input.quarantine === undefined ? decision.envelope : { ...decision.envelope, quarantine: input.quarantine },
          ...(input.headers === undefined ? {} : { headers: input.headers })
        })
        : afterMessage(resetTransaction(commands), { _tag: "Abort" }, refusal)
  }
}

const shutdownNow = (state: State): Step =>
  done({ ...resetTransaction(state), closed: true }, serviceReply(state, 421, "4.3.2", "Service shutting down"), close("shutdown"))

const greeting = (state: State): Step =>
  done({ ...state, greeted: true }, reply(220, undefined, `${state.settings.hostname} ESMTP Postern`))

const connected = (state: State, admission: Event.Admission): Step => {
  // On an implicit TLS listener nothing is said in plaintext: the greeting follows the
  // handshake, and a refused connection is closed before it (a TLS client could not read a 421).
  if (state.security === "implicit") {
    if (admission !== "ok") return done({ ...state, closed: true }, close(admission === "shutdown" ? "shutdown" : "admission"))
    return done({ ...state, reading: { _tag: "Handshake" } }, { _tag: "StartTls" })
  }
  switch (admission) {
    case "ok":
      return decide(state, { stage: "connect" })
    case "global-limit":
    case "client-limit":
      return done(
        { ...state, closed: true },
        serviceReply(state, 421, "4.7.0", "Error: too many connections"),
        close("admission")
      )
    case "shutdown":
      return shutdownNow(state)
  }
}

const line = (state: State, text: string, flaw: Framer.LineFlaw | undefined): Step => {
  if (state.reading._tag === "AuthResponse") {
    if (flaw === "bare-lf") return done({ ...state, closed: true }, replies.bareLf, close("protocol"))
    if (flaw !== undefined) return rejected(commandsAgain(state), replies.authMalformed, true)
    return authResponse(state, text)
  }
  if (state.reading._tag !== "Commands") return done(state)
  switch (flaw) {
    case "bare-lf":
      return done({ ...state, closed: true }, replies.bareLf, close("protocol"))
    case "bare-cr":
      return rejected(state, replies.bareCr, true)
    case "nul":
      return rejected(state, replies.nul, true)
    case undefined:
      break
  }
  const parsed = Command.parse(text, { smtputf8: state.transaction?.parameters.smtputf8 ?? false })
  switch (parsed._tag) {
    case "Unknown":
      return rejected(state, { _tag: "Reply", reply: parsed.reply }, true)
    case "Invalid":
      return rejected(state, { _tag: "Reply", reply: parsed.reply }, Protocol.flagsOf(parsed.verb).countsAsError)
    case "Parsed": {
      const next = command(state, parsed.command)
      return Protocol.flagsOf(parsed.command._tag).endsGroup ? { ...next, flush: true } : next
    }
  }
}

/** STARTTLS is offered on listeners with TLS, until the connection is encrypted. */
const offersStartTls = (state: State): boolean =>
  (state.security === "may" || state.security === "encrypt") && state.tls === undefined

const command = (state: State, cmd: Command.Command): Step => {
  const flags = Protocol.flagsOf(cmd._tag)
  const counts = flags.countsAsError
  if (state.security === "encrypt" && state.tls === undefined && !flags.allowedBeforeTls) {
    // A BDAT chunk follows its command unasked (RFC 3030): it is read and dropped, and the
    // refusal comes at its end, or its bytes would be taken for commands.
    if (cmd._tag === "Bdat") return refuseChunk(state, cmd.size, cmd.last, replies.mustStartTls.reply)
    return rejected(state, replies.mustStartTls, counts)
  }
  switch (cmd._tag) {
    case "Ehlo":
      return withActions(
        dropChunks(state),
        decide(resetTransaction(state), {
          stage: "helo",
          helo: { extended: true, domain: cmd.domain },
          reply: Reply.multiline(250, [
            state.settings.hostname,
            ...Protocol.ehloKeywords(state.settings.maxMessageSize, {
              startTls: offersStartTls(state),
              auth: offersAuth(state) ? Sasl.mechanisms : []
            })
          ])
        })
      )
    case "Helo":
      return withActions(
        dropChunks(state),
        decide(resetTransaction(state), {
          stage: "helo",
          helo: { extended: false, domain: cmd.domain },
          reply: Reply.make(250, undefined, state.settings.hostname)
        })
      )
    case "Mail":
      return mail(state, cmd.from, cmd.parameters, counts)
    case "Rcpt":
      return rcpt(state, cmd.to, counts)
    case "Data":
      return data(state, counts)
    case "Bdat":
      return bdat(state, cmd.size, cmd.last)
    case "Rset":
      return done(resetTransaction(state), ...dropChunks(state), replies.ok)
    case "Noop":
      return done(state, replies.ok)
    case "Quit":
      return done({ ...resetTransaction(state), closed: true }, replies.bye, close("quit"))
    case "Vrfy":
      return done(state, replies.vrfy)
    case "Expn":
      return rejected(state, replies.notImplemented, counts)
    case "Help":
      return done(state, replies.help)
    case "Starttls":
      return startTls(state, counts)
    case "Auth":
      return auth(state, cmd.mechanism, cmd.initialResponse, counts)
  }
}

/** `step` with `first` done before its own actions. */
const withActions = (first: ReadonlyArray<Action>, step: Step): Step =>
  first.length === 0 ? step : { ...step, actions: [...first, ...step.actions] }

const startTls = (state: State, counts: boolean): Step => {
  if (state.tls !== undefined) return rejected(state, replies.tlsActive, counts)
  if (!offersStartTls(state)) return rejected(state, replies.notImplemented, counts)
  if (state.transaction !== undefined) return rejected(state, replies.tlsInTransaction, counts)
  return done({ ...state, reading: { _tag: "Handshake" } }, replies.readyTls, { _tag: "StartTls" })
}

/**
 * RFC 3207 section 4.2: after the handshake the client knows nothing from before it, so HELO
 * and any transaction are forgotten and it must EHLO again. On an implicit TLS listener this
 * is where the greeting is given.
 */
const tlsEstablished = (state: State, facts: Event.TlsFacts): Step => {
  if (state.reading._tag !== "Handshake") return done(state)
  const secured: State = { ...resetTransaction(state), helo: undefined, authenticated: undefined, tls: facts }
  if (state.draining) return shutdownNow(secured)
  return secured.greeted ? done(secured) : decide(secured, { stage: "connect" })
}

const mail = (state: State, from: Address.ReversePath, parameters: Command.MailParameters, counts: boolean): Step => {
  if (state.helo === undefined) return rejected(state, replies.needHelo, counts)
  if (state.transaction !== undefined) return rejected(state, replies.nestedMail, counts)
  if (parameters.size !== undefined && parameters.size > state.settings.maxMessageSize) {
    return rejected(state, reply(552, "5.3.4", "Message size exceeds fixed limit"), counts)
  }
  return decide(state, { stage: "mail", transaction: { from, parameters, recipients: [], chunking: false } })
}

const rcpt = (state: State, to: Address.ForwardPath, counts: boolean): Step => {
  const transaction = state.transaction
  if (transaction === undefined) return rejected(state, replies.needMail, counts)
  if (transaction.recipients.length >= state.settings.maxRecipients) return done(state, replies.tooManyRecipients)
  const routed = route(state.settings, to)
  if (routed._tag === "Rejected") return rejected(state, routed.reply, counts)
  return decide(state, { stage: "rcpt", recipient: routed.recipient, local: routed._tag === "Local" })
}

type Route =
  | { readonly _tag: "Local"; readonly recipient: string }
  /** Not a local domain: accepted only if a policy rule accepts it (relaying is never a default). */
  | { readonly _tag: "Remote"; readonly recipient: string }
  | { readonly _tag: "Rejected"; readonly reply: ReplyAction }

/** Where a recipient goes: a local user, another domain, or nowhere (an unknown local user). */
export const route = (settings: Event.MachineSettings, to: Address.ForwardPath): Route => {
  const primary = settings.localDomains[0]
  if (to._tag === "Postmaster") {
    return primary === undefined
      ? { _tag: "Rejected", reply: reply(550, "5.1.1", "<Postmaster>: Recipient address rejected: no local domain") }
      : { _tag: "Local", recipient: `postmaster@${primary.domain}` }
  }
  const text = Address.format(to)
  const domain = settings.localDomains.find((d) => d.domain === to.domain)
  if (domain === undefined) return { _tag: "Remote", recipient: text }
  const local = to.local.toLowerCase()
  if (domain.users === "*" || local === "postmaster" || domain.users.includes(local)) {
    return { _tag: "Local", recipient: text }
  }
  return { _tag: "Rejected", reply: reply(550, "5.1.1", `<${text}>: Recipient address rejected: User unknown`) }
}

const data = (state: State, counts: boolean): Step => {
  const transaction = state.transaction
  if (transaction === undefined) return rejected(state, replies.needMail, counts)
  if (transaction.chunking) return rejected(state, replies.dataAfterBdat, counts)
  if (transaction.recipients.length === 0) return rejected(state, replies.noRecipients, counts)
  if (transaction.parameters.body === "BINARYMIME") return rejected(state, replies.binaryNeedsBdat, counts)
  return done({ ...state, reading: { _tag: "Data" } }, replies.startData, { _tag: "ReadData" })
}

/** Reads a BDAT chunk only to stay in sync with the client; `answer` is the reply at its end. */
const refuseChunk = (state: State, size: number, last: boolean, answer: Reply.Reply): Step =>
  done(
    { ...state, reading: { _tag: "Bdat", last, reply: answer } },
    { _tag: "ReadBdat", size, first: false, keep: false }
  )

/**
 * BDAT content is always read, even when the command is refused, because the client sends it
 * without waiting (RFC 3030 section 4.2); the refusal is the reply at the chunk's end.
 */
const bdat = (state: State, size: number, last: boolean): Step => {
  const transaction = state.transaction
  const refusal = transaction === undefined
    ? replies.needMail
    : transaction.recipients.length === 0
    ? replies.noRecipients
    : undefined
  if (refusal !== undefined || transaction === undefined) {
    return refuseChunk(state, size, last, refusal?.reply ?? replies.needMail.reply)
  }
  return done(
    { ...state, transaction: { ...transaction, chunking: true }, reading: { _tag: "Bdat", last, reply: undefined } },
    { _tag: "ReadBdat", size, first: !transaction.chunking, keep: true }
  )
}

const envelopeOf = (transaction: Transaction): Event.Envelope => {
  const body = transaction.parameters.body
  return {
    from: Address.format(transaction.from),
    to: transaction.recipients,
    smtputf8: transaction.parameters.smtputf8,
    ...(body === undefined ? {} : { body })
  }
}

const contentEnd = (
  state: State,
  size: number,
  bareLineEnding: "lf" | "cr" | undefined,
  headers: ReadonlyArray<Headers.Header>
): Step => {
  const reading = state.reading
  const transaction = state.transaction
  if (reading._tag === "Bdat" && reading.reply !== undefined) {
    const refused = rejected(
      { ...state, reading: { _tag: "Commands" } },
      { _tag: "Reply", reply: reading.reply },
      Protocol.flagsOf("Bdat").countsAsError
    )
    return refused.state.closed ? refused : afterMessage(refused.state, ...refused.actions)
  }
  if ((reading._tag !== "Data" && reading._tag !== "Bdat") || transaction === undefined) return done(state)
  if (size > state.settings.maxMessageSize) {
    return afterMessage(resetTransaction(state), { _tag: "Abort" }, replies.tooBig)
  }
  const binary = transaction.parameters.body === "BINARYMIME"
  const last = reading._tag === "Data" || reading.last
  if (bareLineEnding !== undefined && !binary && last) {
    return afterMessage(
      resetTransaction(state),
      { _tag: "Abort" },
      bareLineEnding === "lf" ? replies.bareLfContent : replies.bareCrContent
    )
  }
  if (!last) {
    // Draining does not wait for LAST: the client decides when that comes, so the session
    // closes after answering the chunk, and the chunks spooled so far are dropped.
    const answer = reply(250, "2.0.0", `Ok: ${size} octets received`)
    if (state.draining) return afterMessage(resetTransaction(state), answer, { _tag: "Abort" })
    return done({ ...state, reading: { _tag: "Commands" } }, answer)
  }
  return decide(state, { stage: "data", envelope: envelopeOf(transaction), size, headers })
}

const queued = (state: State, answer: Action): Step => {
  if (state.reading._tag !== "Queueing") return done(state)
  return afterMessage(resetTransaction(state), answer)
}

/** The message is answered; a shutdown that waited for it now closes the session. */
const afterMessage = (state: State, ...actions: ReadonlyArray<Action>): Step => {
  if (!state.draining) return done(state, ...actions)
  const closing = shutdownNow(state)
  return done(closing.state, ...actions, ...closing.actions)
}
