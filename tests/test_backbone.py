"""timm backbones as the Slot Attention encoder and DINOSAUR, on timm's tiny test models with random weights
(nothing is downloaded): feature sets, frozen training, local weight files and their errors, the feature
decoder, and one short DINOSAUR run end to end."""
import json
from contextlib import nullcontext

import pytest
import torch

import train_slots
from slots import BackboneError, MLPFeatureDecoder, TimmBackbone
from training.config import ConfigError, build_config, load_yaml, parse_override, preset_path

RESNET, VIT = "test_resnet.r160_in1k", "test_vit.r160_in1k"


def images(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def tiny_config(task: str, *overrides: str):
    """A 16x16 run with a tiny random test_vit backbone seen at 64x64 (a 4x4 patch grid)."""
    values = ["data.resolution=16", "model.num_slots=4", "model.slot_dim=16", "model.mlp_hidden_dim=32",
              "model.encoder_channels=16", "model.decoder_channels=8", "model.decoder_layers=2",
              "model.decoder_kernel=3", f"backbone.name={VIT}", "backbone.pretrained=false", "backbone.image_size=64",
              "dinosaur.decoder_hidden_dim=32", "dinosaur.decoder_layers=2", *overrides]
    return build_config([{"task": task}] + [parse_override(text) for text in values])


def build(config):
    """build_model, which warns when a frozen backbone has random weights."""
    from training.build import build_model

    with pytest.warns(UserWarning, match="random weights") if config.backbone.frozen else nullcontext():
        return build_model(config)


def test_cnn_backbone_gives_the_feature_map_of_one_stage_as_a_set():
    import timm

    backbone = TimmBackbone(RESNET, image_size=64, feature_index=2)
    tokens = backbone(images())  # 16x16 inputs are resized to 64x64; stage 2 has stride 8
    assert backbone.grid == (8, 8) and backbone.out_dim == 48 and tokens.shape == (2, 64, 48)
    # the same maps as timm's features_only model with the same weights
    reference = timm.create_model(RESNET, pretrained=False, features_only=True, out_indices=(2,)).eval()
    assert not reference.load_state_dict(backbone.model.state_dict(), strict=False).missing_keys
    resized = torch.nn.functional.interpolate(images(), size=(64, 64), mode="bilinear", antialias=True)
    expected = reference(resized)[0].flatten(2).transpose(1, 2)  # test models normalise with mean = std = 0.5
    torch.testing.assert_close(tokens, expected)
    last = TimmBackbone(RESNET, image_size=64)  # default: the last stage (stride 32)
    assert last.grid == (2, 2) and last(images()).shape == (2, 4, 96)
    with pytest.raises(BackboneError, match=r"feature_index must be in 0\.\.4"):
        TimmBackbone(RESNET, image_size=64, feature_index=5)


def test_vit_backbone_drops_prefix_tokens_and_keeps_one_token_per_patch():
    backbone = TimmBackbone(VIT, image_size=64)
    assert backbone.model.num_prefix_tokens == 1 and backbone.grid == (4, 4)
    tokens = backbone(images())
    assert tokens.shape == (2, 16, 64)  # 4x4 patches of 16 pixels, class token dropped
    resized = torch.nn.functional.interpolate(images(), size=(64, 64), mode="bilinear", antialias=True)
    full = backbone.model.forward_features(resized)
    assert full.shape[1] == 17
    torch.testing.assert_close(tokens, full[:, 1:])
    with pytest.raises(BackboneError, match="not a multiple of the patch size 16"):
        TimmBackbone(VIT, image_size=60)


def test_images_in_minus_one_one_are_normalised_with_the_backbones_mean_and_std():
    backbone = TimmBackbone(VIT, image_size=16 * 4)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    backbone.mean, backbone.std = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    pixels = images(size=64)
    expected = backbone.model.forward_features(((pixels + 1) / 2 - mean[:, None, None]) / std[:, None, None])
    torch.testing.assert_close(backbone(pixels), expected[:, 1:])


def test_frozen_backbone_gets_no_gradient_stays_in_eval_mode_and_is_not_optimised():
    from training.tasks import make_task

    config = tiny_config("discovery", f"backbone.name={RESNET}", "backbone.feature_index=2")  # pixel autoencoder
    model = build(config)
    assert model.encoder.position is not None and model.encoder.backbone.grid == (8, 8)
    model.train()
    backbone = model.encoder.backbone
    assert not backbone.training and not backbone.model.training and model.training
    output = model(images())
    torch.nn.functional.mse_loss(output.reconstruction, images()).backward()
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert all(p.grad is not None for p in model.slot_attention.parameters())
    optimised = {id(p) for p in make_task(config).param_groups(model)}
    assert not optimised & {id(p) for p in backbone.parameters()}
    assert optimised == {id(p) for name, p in model.named_parameters() if not name.startswith("encoder.backbone.")}

    trained_config = tiny_config("discovery", f"backbone.name={RESNET}", "backbone.frozen=false")
    trained = build(trained_config)
    trained.train()
    assert trained.encoder.backbone.model.training
    torch.nn.functional.mse_loss(trained(images()).reconstruction, images()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.encoder.backbone.parameters())
    assert len(make_task(trained_config).param_groups(trained)) == len(list(trained.parameters()))


@pytest.mark.parametrize("name", [RESNET, VIT])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_round_trip_through_a_local_file(tmp_path, name, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model(name, pretrained=False).eval()
    state = source.state_dict()
    file = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(file))
    else:
        torch.save({"state_dict": state, "epoch": 3}, file)  # a training checkpoint wrapper is unwrapped
    torch.manual_seed(2)
    loaded = TimmBackbone(name, image_size=160 if name == VIT else 64, weights=str(file))
    fresh = TimmBackbone(name, image_size=160 if name == VIT else 64)
    pixels = images(size=64)
    resized = torch.nn.functional.interpolate(pixels, size=(loaded.image_size,) * 2, mode="bilinear", antialias=True)
    inputs = ((resized + 1) / 2 - 0.5) / 0.5  # the test models' mean and std
    with torch.no_grad():
        if name == VIT:
            expected = source.forward_features(inputs)[:, 1:]
        else:
            expected = source.forward_intermediates(inputs, indices=[4], intermediates_only=True)[0]
            expected = expected.flatten(2).transpose(1, 2)
    assert torch.equal(loaded(pixels), expected)
    assert not torch.equal(fresh(pixels), expected)


def test_weights_of_another_architecture_are_refused_with_the_file_and_keys_named(tmp_path):
    import timm
    from safetensors.torch import save_file

    resnet_file = tmp_path / "resnet.safetensors"
    save_file(timm.create_model(RESNET, pretrained=False).state_dict(), str(resnet_file))
    with pytest.raises(BackboneError) as error:
        TimmBackbone(VIT, image_size=64, weights=str(resnet_file))
    message = str(error.value)
    assert str(resnet_file) in message and f"do not match timm model '{VIT}'" in message
    assert "78 missing keys (cls_token, pos_embed, patch_embed.proj.weight" in message
    assert "92 unexpected keys (bn1.num_batches_tracked" in message and "backbone.weights=" in message
    assert len(message.splitlines()) == 1

    narrow_file = tmp_path / "narrow.pth"
    torch.save(timm.create_model(VIT, pretrained=False, embed_dim=32).state_dict(), narrow_file)
    with pytest.raises(BackboneError, match=r"shape mismatches \(cls_token: file \[1, 1, 32\] vs model \[1, 1, 64\]"):
        TimmBackbone(VIT, image_size=64, weights=str(narrow_file))


def test_missing_unreadable_and_absent_weights_give_clear_errors(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(BackboneError, match="backbone weights file not found: .*nowhere.safetensors.*"
                                            "pretrained=True.*backbone.weights="):
        TimmBackbone(VIT, image_size=64, weights=str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(BackboneError, match="could not read backbone weights from .*garbage.pth"):
        TimmBackbone(VIT, image_size=64, weights=str(garbage))
    with pytest.raises(ConfigError, match=r"backbone.name 'no_such_model_xyz': Unknown model"):
        build(tiny_config("discovery", "backbone.name=no_such_model_xyz", "backbone.frozen=false"))

    from training.tasks import make_task

    with pytest.raises(ConfigError, match="backbone.weights is not set .*timm.create_model"):
        make_task(tiny_config("dinosaur", "backbone.pretrained=true"))
    with pytest.raises(ConfigError, match="weights file not found"):
        make_task(tiny_config("dinosaur", "backbone.pretrained=true", f"backbone.weights={missing}"))
    with pytest.raises(ConfigError, match="set backbone.frozen=true"):
        tiny_config("dinosaur", "backbone.frozen=false")


def test_feature_decoder_masks_sum_to_one_and_follow_the_slot_order():
    torch.manual_seed(0)
    decoder = MLPFeatureDecoder(slot_dim=8, feature_dim=5, num_tokens=12, hidden_dim=16, num_layers=3)
    slots = torch.randn(2, 4, 8)
    reconstruction, masks = decoder(slots)
    assert reconstruction.shape == (2, 12, 5) and masks.shape == (2, 4, 12)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 12))
    permutation = torch.tensor([2, 0, 3, 1])
    permuted_reconstruction, permuted_masks = decoder(slots[:, permutation])
    torch.testing.assert_close(permuted_masks, masks[:, permutation])
    torch.testing.assert_close(permuted_reconstruction, reconstruction, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("num_slots", [1, 3, 7])
def test_dinosaur_takes_the_slot_count_per_call_and_trains_only_past_the_backbone(num_slots):
    model = build(tiny_config("dinosaur"))
    model.train()
    output = model(images(), num_slots=num_slots, num_iterations=2)
    assert output.masks.shape == (2, num_slots, 16, 16) and output.token_masks.shape == (2, num_slots, 16)
    assert output.reconstruction.shape == output.target.shape == (2, 16, 64)
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, 16, 16))
    torch.nn.functional.mse_loss(output.reconstruction, output.target).backward()
    assert all(p.grad is None for p in model.encoder.backbone.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_dinosaur_preset_trains_and_reports_fg_ari_and_the_slot_sweep(tmp_path, capsys):
    from eval import slot_sweep

    weights = tmp_path / "dino.safetensors"
    weights.touch()  # the config build checks only that the file is there
    preset = build_config([load_yaml(preset_path("dinosaur")), parse_override(f"backbone.weights={weights}")])
    assert preset.task == "dinosaur" and preset.backbone.frozen and preset.backbone.pretrained
    assert train_slots.main(["--preset", "dinosaur", f"data.root={tmp_path / 'data'}"]) == 2  # no weights file
    err = capsys.readouterr().err.strip()
    assert "backbone.weights is not set" in err and len(err.splitlines()) == 1, err

    args = ["--preset", "dinosaur", f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}", "name=dino",
            "data.resolution=16", "data.num_train=40", "data.num_eval=8", "data.pairs_per_shard=4",
            "data.shuffle_buffer=8", f"backbone.name={VIT}", "backbone.pretrained=false", "backbone.image_size=64",
            "model.num_slots=4", "model.slot_dim=16", "model.mlp_hidden_dim=32", "model.encoder_channels=16",
            "dinosaur.decoder_hidden_dim=32", "dinosaur.decoder_layers=2", "train.batch_size=4",
            "train.max_steps=4", "train.warmup_steps=1", "train.batches_per_epoch=4", "train.log_every=1",
            "train.eval_every=2", "train.eval_images=8", "train.checkpoint_every=4", "train.cpu_threads=1",
            "eval.sweep_slots=[2, 6]", "eval.batch_size=16", "eval.num_visualise=2"]
    with pytest.warns(UserWarning, match="random weights"):
        assert train_slots.main(args) == 0
    run_dir = tmp_path / "runs" / "dino"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["num_slots"] == 4 and metrics["eval_images"] == 16
    assert -1.0 <= metrics["fg_ari"] <= 1.0
    assert [row["num_slots"] for row in metrics["slot_sweep"]] == [2, 4, 6]
    for name in ("slot_sweep.csv", "slot_sweep.png", "slots.png", "eval_log.jsonl", "train_log.jsonl"):
        assert (run_dir / name).stat().st_size > 0, name
    losses = [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)

    with pytest.warns(UserWarning, match="random weights"):  # the sweep command rebuilds the run's model
        assert slot_sweep.main(["--run", str(run_dir), "--num-slots", "3", "--out", str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "slot_sweep.csv").read_text().splitlines()[1].startswith("3,3,")
