import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh } from '../../lab/netns.js';

/** A key and certificate in PEM, both as text and as files. */
export interface TestCert {
  readonly key: string;
  readonly cert: string;
  readonly keyPath: string;
  readonly certPath: string;
}

/** What a test certificate says and when it is valid. */
export interface CertSpec {
  /** Subject common name. */
  readonly cn: string;
  /** subjectAltName entries, e.g. ['DNS:localhost', 'IP:127.0.0.1']. */
  readonly sans?: readonly string[];
  /** Defaults to now. */
  readonly notBefore?: Date;
  /** Defaults to 30 days from now. */
  readonly notAfter?: Date;
  /** Signed with its own key instead of the test CA's. */
  readonly selfSigned?: boolean;
}

const caConfig = `[ ca ]
default_ca = test_ca
[ test_ca ]
dir = .
database = ./index.txt
new_certs_dir = .
serial = ./serial
default_md = sha256
policy = policy_any
copy_extensions = copy
unique_subject = no
[ policy_any ]
commonName = supplied
`;

// OpenSSL 3.0 (Debian 12) has no -not_before/-not_after on `req -x509`; `openssl ca`
// takes -startdate/-enddate, which is how expired and not-yet-valid certificates are made.
function asn1Time(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:T]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * A throwaway PKI in a temp dir, made with the openssl CLI: a test CA and certificates
 * signed by it or by themselves, with any validity window (also entirely in the past).
 */
export class TestPki {
  private n = 0;

  private constructor(
    readonly dir: string,
    readonly ca: TestCert,
  ) {}

  static async create(): Promise<TestPki> {
    const dir = await mkdtemp(join(tmpdir(), 'faultline-pki-'));
    try {
      await writeFile(join(dir, 'ca.cnf'), caConfig);
      await writeFile(join(dir, 'index.txt'), '');
      await writeFile(join(dir, 'serial'), '1000\n');
      const keyPath = join(dir, 'ca.key');
      const certPath = join(dir, 'ca.crt');
      await sh('openssl', [
        'req',
        '-x509',
        ...ecKey,
        '-keyout',
        keyPath,
        '-out',
        certPath,
        '-subj',
        '/CN=Faultline Test CA',
        '-days',
        '2',
      ]);
      const ca = {
        keyPath,
        certPath,
        key: await readFile(keyPath, 'utf8'),
        cert: await readFile(certPath, 'utf8'),
      };
      return new TestPki(dir, ca);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Issues a certificate as the spec says. */
  async issue(spec: CertSpec): Promise<TestCert> {
    const base = join(this.dir, `cert${++this.n}`);
    const keyPath = `${base}.key`;
    const certPath = `${base}.crt`;
    const csrPath = `${base}.csr`;
    const sans = spec.sans ?? [];
    await sh('openssl', [
      'req',
      '-new',
      ...ecKey,
      '-keyout',
      keyPath,
      '-out',
      csrPath,
      '-subj',
      `/CN=${spec.cn}`,
      ...(sans.length > 0 ? ['-addext', `subjectAltName=${sans.join(',')}`] : []),
    ]);
    const notBefore = spec.notBefore ?? new Date(Date.now() - 60_000);
    const notAfter = spec.notAfter ?? new Date(Date.now() + 30 * 86_400_000);
    const signer = spec.selfSigned
      ? ['-selfsign', '-keyfile', keyPath]
      : ['-cert', this.ca.certPath, '-keyfile', this.ca.keyPath];
    // `openssl ca` resolves the config's relative paths from the working directory.
    await sh('sh', [
      '-c',
      'cd "$1" && shift && exec openssl "$@"',
      'sh',
      this.dir,
      'ca',
      '-batch',
      '-notext',
      '-config',
      'ca.cnf',
      ...signer,
      '-in',
      csrPath,
      '-out',
      certPath,
      '-startdate',
      asn1Time(notBefore),
      '-enddate',
      asn1Time(notAfter),
    ]);
    return {
      keyPath,
      certPath,
      key: await readFile(keyPath, 'utf8'),
      cert: await readFile(certPath, 'utf8'),
    };
  }

  async destroy(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
