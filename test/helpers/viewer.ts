/**
 * The viewer token test collectors are configured with: the read endpoints (paths, agents,
 * diagnosis, incidents) take it, never an agent token. Tests that are not about access send
 * it through these helpers, so the read side's protection changes in one place.
 */
export const viewerToken = 'viewer-token-0123456789abcdef';

/** The `viewers:` section of a test collector's YAML, holding {@link viewerToken}. */
export const viewersYaml: readonly string[] = [
  'viewers:',
  `  - { name: tests, token: ${viewerToken} }`,
];

/** The headers of a read request with {@link viewerToken}. */
export const viewerHeaders: Readonly<Record<string, string>> = {
  authorization: `Bearer ${viewerToken}`,
};

/** `fetch` of a read endpoint with the viewer token (and any other init given). */
export function fetchAsViewer(url: string | URL, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    ...init,
    headers: { ...viewerHeaders, ...(init.headers as Record<string, string> | undefined) },
  });
}
