"""Thin library behind the skill-neuron compendium: tasks, data, models, tuning."""
