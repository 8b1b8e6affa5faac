"""Attribute pre-training of a tiny LLaVA's vision tower on generated shapes scenes.

A stand-in for the pretrained CLIP tower of a real LLaVA: before the language model is trained, the
tower learns to say what is in each cell of a shapes scene. Every patch feature h_p at the layer the
projector reads (``vision_feature_layer``, the CLS feature dropped as in LLaVA's ``default`` strategy)
feeds one linear head W over the 18 object names and "empty", trained with

    L = mean_p CE(W h_p, object(cell(p)))

over the patches p of each image (object(c) = the object in cell c, or "empty"). The name as one class
(not colour and shape apart) makes each feature say which object it shows, so that a question about an
object is one comparison. With a patch grid of 2x2 (image_size / patch_size = 2) each patch is
one cell of the scene's 2x2 grid; with a finer grid each cell spans several patches. The head is thrown
away afterwards. Scenes, their order and the heads' initialisation come from ``seed``, so the result is
deterministic for a seed (and a torch thread count).
"""

from __future__ import annotations

import random

import torch
from torch import nn
from transformers import LlavaForConditionalGeneration, ProcessorMixin

from mmpo.data import shapes

EMPTY = 0


def cell_labels(scene: shapes.Scene, grid: int) -> list[int]:
    """Object class of the cell under each patch of a grid x grid layout, in row-major order: 1 + the
    index of its name in :func:`mmpo.data.shapes.all_object_names`, or 0 for an empty cell."""
    if grid % 2:
        raise ValueError(f"tiny vision pre-training: the patch grid ({grid}x{grid}) must split the 2x2 cells")
    names = shapes.all_object_names()
    classes = [EMPTY] * len(shapes.CELLS)
    for obj in scene.objects:
        classes[shapes.CELLS.index(obj.cell)] = 1 + names.index(obj.name)
    return [classes[2 * (row * 2 // grid) + col * 2 // grid] for row in range(grid) for col in range(grid)]


def pretrain_vision_tower(
    model: LlavaForConditionalGeneration,
    processor: ProcessorMixin,
    steps: int,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    num_scenes: int = 2048,
    scene_size: int = 64,
) -> float:
    """Train ``model``'s vision tower in place on ``num_scenes`` generated scenes; returns the last loss."""
    tower = model.model.vision_tower
    config = tower.config
    grid = config.image_size // config.patch_size
    rng = random.Random(f"tiny-vision:{seed}")
    scenes = [shapes.sample_scene(rng, f"v{i}") for i in range(num_scenes)]
    pixels = processor.image_processor(
        [shapes.render(scene, scene_size) for scene in scenes], return_tensors="pt"
    )["pixel_values"]
    labels = torch.tensor([cell_labels(scene, grid) for scene in scenes])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(config.hidden_size, 1 + len(shapes.all_object_names()))
        optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=lr)
        epochs = -(-steps * batch_size // num_scenes)
        order = torch.cat([torch.randperm(num_scenes) for _ in range(epochs)])
    layer = model.config.vision_feature_layer
    tower.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        features = tower(pixels[index], output_hidden_states=True).hidden_states[layer][:, 1:]
        loss = nn.functional.cross_entropy(head(features).flatten(0, 1), labels[index].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
