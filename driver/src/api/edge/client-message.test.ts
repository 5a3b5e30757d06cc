// What a tenant reads about a failed job: a stable category, never the cluster's raw text.
import { expect } from 'chai';
import { clientJobMessage } from './client-message.js';

const JOB = 'job-aaaaaaaaaaaaaaaaaaaaaaaaaa';

describe('api/client-message: job messages carry no contents, paths, PIDs or traces', () => {
  const leaking: [string, string, string][] = [
    [
      'a CSV error quoting /etc/passwd',
      'failed: /etc/passwd:1: label "root:x:0:0:root:/root:/bin/bash" is not a class index',
      'dataset file could not be read',
    ],
    [
      'a Python traceback',
      'Traceback (most recent call last):\n  File "/home/op/ray-cluster/tensorguard_ray/entrypoint.py", line 3\nRuntimeError: ENOENT: no such file /data/bob/x.csv',
      'dataset file could not be read',
    ],
    [
      'a PID',
      'process 12345 exited without a final status (killed?)',
      "the job's process ended unexpectedly",
    ],
    [
      'a checkpoint path',
      'cannot load /srv/state/bob/jobs/j/checkpoints/round-10/model.safetensors',
      'a checkpoint could not be read or written',
    ],
    [
      'a ledger write error',
      'ENOSPC writing /srv/state/alice/jobs/j/ledger.jsonl',
      'the privacy ledger could not be read or written',
    ],
    [
      'a placement timeout',
      'placement group not ready after 60 s on node 10.0.0.5',
      'the cluster could not place or run the job in time',
    ],
    [
      'a test set overlapping the training set',
      "worker 0 on node 10.0.0.5: dataset.testPath: 3 of this worker's 20 training records also appear in the test set (same features and label), so held-out accuracy and loss would describe training records; remove them from one of the two files",
      'the test set shares records with the training set (held-out metrics would describe training records)',
    ],
    ['anything else', 'Error: boom\n    at foo (/opt/app/x.js:1:1)', 'the job failed on the cluster'],
  ];
  for (const [what, raw, category] of leaking) {
    it(`maps ${what} to "${category}"`, () => {
      const m = clientJobMessage(JOB, raw);
      expect(m).to.equal(`${category}: see the server log (job ${JOB})`);
      expect(m).not.to.match(/\/(etc|home|srv|opt|data)|root:x|12345|Traceback|\n/);
    });
  }

  it("passes the coordinator's own fixed messages unchanged", () => {
    for (const m of [
      'completed 5 rounds',
      'privacy budget: another round would reach ε = 8.123 > epsilonBudget 8',
      '',
      'stopped on the cluster',
    ]) {
      expect(clientJobMessage(JOB, m)).to.equal(m);
    }
  });
});
