// Typed errors of the Ray client. Each says what to do next; `cause` keeps the underlying error.

export class RayError extends Error {
  override name = 'RayError';
}

/** The dashboard (Jobs API) cannot be reached, or answered 5xx after the retries. */
export class RayUnavailableError extends RayError {
  override name = 'RayUnavailableError';
  constructor(
    readonly address: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`Ray at ${address} is unavailable: ${message}`, options);
  }
}

/** 401/403: token auth is on and the token is missing or wrong. */
export class RayAuthError extends RayError {
  override name = 'RayAuthError';
  constructor(readonly address: string) {
    super(
      `Ray at ${address} refused the request (token auth): set RAY_AUTH_TOKEN to the cluster's token ` +
        '(`ray get-auth-token` on the head), or use the address file of a local head',
    );
  }
}

export class RayJobNotFoundError extends RayError {
  override name = 'RayJobNotFoundError';
  constructor(
    readonly submissionId: string,
    readonly address: string,
  ) {
    super(`no job '${submissionId}' on the Ray cluster at ${address} (\`tensorguard list\` shows the jobs)`);
  }
}

/** Any other non-2xx answer. */
export class RayHttpError extends RayError {
  override name = 'RayHttpError';
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${method} ${path} answered ${status}: ${body.slice(0, 500)}`);
  }
}

/** The local head could not start or did not become ready. */
export class RayHeadError extends RayError {
  override name = 'RayHeadError';
}

/** No cluster address was given and none can be found. */
export class NoClusterError extends RayError {
  override name = 'NoClusterError';
  constructor() {
    super(
      'no Ray cluster: pass --address http://HOST:8265, set RAY_ADDRESS to the dashboard URL, or start a ' +
        'local head that stays up with `tensorguard train --detach`',
    );
  }
}
