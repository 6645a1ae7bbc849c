"""Parameter-efficient adapters for the CLIP towers (LoRA through peft) and their merge for deployment."""
