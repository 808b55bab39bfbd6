import { createHash } from 'node:crypto';
import { createAccount, createOperator, createUser } from '@nats-io/nkeys';
import type { KeyPair } from '@nats-io/nkeys';

/**
 * NATS decentralised auth for tests, without `nsc`: an operator, accounts and users as nkeys
 * (@nats-io/nkeys, the NATS client's own dependency) and their JWTs (v2 claims, `ed25519-nkey`
 * signatures), a nats-server config that trusts the operator (`resolver: MEMORY` with the
 * accounts preloaded), and user creds files as `nsc` writes them.
 */

const b64url = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');

/** A signed JWT of `nats` claims about `subject`, issued by `issuer`. */
function jwt(
  issuer: KeyPair,
  subject: string,
  name: string,
  nats: Record<string, unknown>,
): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));
  const claims: Record<string, unknown> = {
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats: { ...nats, version: 2 },
  };
  claims.jti = createHash('sha256').update(JSON.stringify(claims)).digest('base64url');
  const body = `${header}.${b64url(JSON.stringify(claims))}`;
  return `${body}.${b64url(issuer.sign(new TextEncoder().encode(body)))}`;
}

const unlimited = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
};

/** An operator with a system account and one application account with JetStream. */
export class NatsOperator {
  readonly operator = createOperator();
  readonly system = createAccount();
  readonly account = createAccount();

  /** The nats-server config lines that trust this operator (JetStream on for the account). */
  serverConfig(): string {
    const op = jwt(this.operator, this.operator.getPublicKey(), 'test-operator', {
      type: 'operator',
      system_account: this.system.getPublicKey(),
    });
    const account = (kp: KeyPair, name: string, jetstream: boolean): string =>
      jwt(this.operator, kp.getPublicKey(), name, {
        type: 'account',
        limits: {
          ...unlimited,
          ...(jetstream ? { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 } : {}),
        },
        default_permissions: { pub: {}, sub: {} },
      });
    return [
      `operator: ${op}`,
      `system_account: ${this.system.getPublicKey()}`,
      'resolver: MEMORY',
      'resolver_preload: {',
      `  ${this.system.getPublicKey()}: ${account(this.system, 'SYS', false)}`,
      `  ${this.account.getPublicKey()}: ${account(this.account, 'APP', true)}`,
      '}',
    ].join('\n');
  }

  /**
   * A creds file's text for a new user of `account` (default: the application account), as
   * `nsc generate creds` writes it.
   */
  userCreds(name: string, account: KeyPair = this.account): string {
    const user = createUser();
    const token = jwt(account, user.getPublicKey(), name, {
      type: 'user',
      pub: {},
      sub: {},
      subs: -1,
      data: -1,
      payload: -1,
    });
    const seed = new TextDecoder().decode(user.getSeed());
    return [
      '-----BEGIN NATS USER JWT-----',
      token,
      '------END NATS USER JWT------',
      '',
      '************************* IMPORTANT *************************',
      'NKEY Seed printed below can be used to sign and prove identity.',
      'NKEYs are sensitive and should be treated as secrets.',
      '',
      '-----BEGIN USER NKEY SEED-----',
      seed,
      '------END USER NKEY SEED------',
      '',
      '*************************************************************',
      '',
    ].join('\n');
  }
}
