/**
 * Reference outputs for the converted face models: the original TFJS graph models run on TFJS's
 * pure-JS CPU backend (devDependencies @tensorflow/tfjs-core, -backend-cpu, -converter).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { join } from 'node:path';
import { loadTfGraphModel } from '../../models/face/tfjs-graph.ts';
import { humanModelsDir } from '../../models/face/convert.ts';

let ready: Promise<void> | null = null;

export async function loadReferenceModel(name: string): Promise<GraphModel> {
  ready ??= tf.setBackend('cpu').then(() => tf.ready());
  await ready;
  const m = loadTfGraphModel(join(humanModelsDir(), `${name}.json`));
  const weightSpecs = (m.json.weightsManifest as Array<{ weights: unknown[] }>).flatMap((g) => g.weights);
  const buf = m.weightBytes.buffer.slice(m.weightBytes.byteOffset, m.weightBytes.byteOffset + m.weightBytes.byteLength) as ArrayBuffer;
  return loadGraphModel({
    load: async () => ({
      modelTopology: m.json.modelTopology,
      weightSpecs: weightSpecs as never,
      weightData: buf,
      format: m.json.format,
      generatedBy: m.json.generatedBy,
      convertedBy: m.json.convertedBy,
      userDefinedMetadata: m.json.userDefinedMetadata,
      signature: m.json.signature,
    }),
  });
}

/** Runs the reference model on an NHWC float32 input; returns every signature output by name (without ":0"). */
export async function runReference(model: GraphModel, input: Float32Array, shape: number[], outputs: string[]): Promise<Record<string, Float32Array>> {
  const x = tf.tensor(input, shape, 'float32');
  const res = (await model.executeAsync(x, outputs)) as tf.Tensor | tf.Tensor[];
  const list = Array.isArray(res) ? res : [res];
  const out: Record<string, Float32Array> = {};
  for (let i = 0; i < outputs.length; i++) out[outputs[i]] = (await list[i].data()) as Float32Array;
  x.dispose();
  for (const t of list) t.dispose();
  return out;
}
