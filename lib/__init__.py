"""Thin library behind the skill-neuron compendium.

Modules, one job each:
- `tasks`: the task registry (types, labels, verbalizers, hub ids, local files, adversarial links);
- `formats`, `data`: readers for the real file formats, and train/dev/test splits in canonical form;
- `models`: frozen backbones (masked LM, tied encoder, T5) that compute only the verbalizer logits;
- `prompt`: soft-prompt initialisation and safetensors files;
- `tuning`, `evaluation`: resumable prompt tuning, accuracy and macro-F1 on any task;
- `hooks`: context managers that record or perturb FFN activations;
- `skill_neurons`, `analyses`: streamed predictivity, selection, and tidy tables for the book;
- `indicators`, `projector`, `transfer_study`: transferability indicators, the cross-model projector,
  and the transfer-method study (initialisation, PANDA) over a profile's cached prompts;
- `profiles`, `experiments`, `notebook`, `runner`: named profiles, the cached pipeline the notebooks
  call, and the papermill runner;
- `tiny`: tiny random backbones of the real classes and synthetic tasks (tests, smoke profile).
"""
