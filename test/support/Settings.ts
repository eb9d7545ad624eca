/**
 * Machine settings shared by the pure-core tests: small limits so that every limit is reached
 * in a few inputs, a domain with known users and a discard domain.
 */
import type * as Event from "../../src/log/Event.ts"

export const settings: Event.MachineSettings = {
  hostname: "mx.example.test",
  maxMessageSize: 1000,
  maxRecipients: 3,
  maxErrors: 5,
  localDomains: [
    { domain: "example.test", users: ["alice", "bob"], transport: "maildir" },
    { domain: "sink.test", users: "*", transport: "discard" }
  ]
}
