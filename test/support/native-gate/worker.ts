/**
 * A worker that is always inside onnxruntime-node: it runs a chain of matrix products over and over
 * and now and then releases its session and creates a new one. Gated the way the server's workers
 * are: importing server/face/models.ts gates the InferenceSession class of this thread.
 */
import { once } from 'node:events';
import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import '../../../server/face/models.ts';

const [model] = (await once(parentPort!, 'message')) as [string];
const x = new ort.Tensor('float32', new Float32Array(512 * 512).fill(1), [512, 512]);
let session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
parentPort!.postMessage('ready');
for (let n = 1; ; n++) {
  await session.run({ x });
  if (n % 4 === 0) {
    await session.release();
    session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  }
}
