"""The Noise2Noise family: loss hygiene, the no-skip cross path, progressive stages."""

import dataclasses
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_app import config as C
from lightning_app import train as train_mod
from lightning_app.nets.cross_domain import CrossDomainNet
from lightning_app.systems import losses
from lightning_app.training import run as training_run
from lightning_app.training.run import build_datamodule, build_system, train
from tests.helpers import net_settings, smoke_config

TINY = net_settings(
    "cross_domain", channels=[4, 8, 8], time_strides=[1, 2], context_dilations=[1, 2], latent_channels=8
)


def _trained_like(net: CrossDomainNet) -> CrossDomainNet:
    """The mask heads start at zero (a pass-through); give them weights so inputs matter."""
    for decoder in (net.decoder_a, net.decoder_b):
        torch.nn.init.normal_(decoder.head.weight, std=0.5)
    return net.eval()


def _n2n_batch(tmp_path, experiment="pure_noise2noise"):
    cfg = smoke_config(tmp_path, experiment=experiment)
    system = build_system(cfg)
    dm = build_datamodule(cfg, system)
    dm.setup("fit")
    return system, next(iter(dm.train_dataloader()))


def test_loss_never_reads_the_clean_signal(tmp_path):
    system, batch = _n2n_batch(tmp_path)
    torch.manual_seed(0)
    before, _ = system.shared_step(batch)
    garbage = dict(
        batch,
        clean=torch.randn_like(batch["clean"]) * 100,
        noise=torch.randn_like(batch["noise"]),
        noise_b=torch.randn_like(batch["noise_b"]),
    )
    after, _ = system.shared_step(garbage)
    for name in before:
        torch.testing.assert_close(before[name], after[name], rtol=0, atol=0, msg=name)
    # and the gradient cannot reach it either
    clean = batch["clean"].clone().requires_grad_(True)
    system.shared_step(dict(batch, clean=clean))[0]["loss"].backward()
    assert clean.grad is None


def test_no_skip_cross_path_ignores_skip_features_and_skip_path_reads_the_targets():
    x_a, x_b = torch.randn(2, 1, 4000), torch.randn(2, 1, 4000)
    for strategy, should_change in (("no_skip", False), ("skip", True)):
        torch.manual_seed(0)
        net = _trained_like(CrossDomainNet(**{**TINY, "strategy": strategy}))
        with torch.no_grad():
            a, b = net.encode(x_a), net.encode(x_b)
            tampered = dataclasses.replace(a, skips=[torch.randn_like(s) * 10 for s in a.skips])
            out, out_tampered = (
                net.cross(net.decoder_a, b, a, x_b),
                net.cross(net.decoder_a, b, tampered, x_b),
            )
            # the source's own skips never enter the cross path
            b_tampered = dataclasses.replace(b, skips=[torch.randn_like(s) * 10 for s in b.skips])
            torch.testing.assert_close(net.cross(net.decoder_a, b_tampered, a, x_b), out)
        assert torch.allclose(out, out_tampered) != should_change, strategy
    # Inference: the no-skip path; a model trained with the skip ablation runs through its own skips.
    for strategy, skips in (("no_skip", lambda enc: None), ("skip", lambda enc: enc.skips)):
        torch.manual_seed(0)
        net = _trained_like(CrossDomainNet(**{**TINY, "strategy": strategy}))
        with torch.no_grad():
            enc = net.encode(x_a)
            torch.testing.assert_close(
                net(x_a), net.decode(net.decoder_a, enc, x_a, skips(enc)), msg=strategy
            )


def test_no_skip_cross_output_depends_on_the_source_copy_only():
    """Noise2Noise needs cross_a = f(x_b): changing x_a (the target copy) must not move it."""
    torch.manual_seed(0)
    net = _trained_like(CrossDomainNet(**TINY))
    x_a, x_b = torch.randn(2, 1, 4000), torch.randn(2, 1, 4000)
    with torch.no_grad():
        first = net.paths(x_a, x_b)
        second = net.paths(x_a + torch.randn_like(x_a), x_b)
    torch.testing.assert_close(first["cross_a"], second["cross_a"])
    assert not torch.allclose(first["cross_b"], second["cross_b"])


def test_content_loss_is_zero_for_identical_inputs_and_positive_otherwise():
    net = _trained_like(CrossDomainNet(**TINY))
    x = torch.randn(2, 1, 4000)
    same = net.paths(x, x)
    assert float(losses.content(same["z_a"], same["z_b"])) == 0.0
    other = net.paths(x, x + 0.5 * torch.randn_like(x))
    assert float(losses.content(other["z_a"], other["z_b"])) > 0.0


def test_noise2noise_mse_is_minimised_by_the_clean_signal_on_average():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 1, 4000, generator=g)
    x_b = clean + 0.5 * torch.randn(clean.shape, generator=g)
    targets = [clean + 0.5 * torch.randn(clean.shape, generator=g) for _ in range(200)]
    mean = lambda est: torch.stack([losses.noise2noise_mse(est, t, x_b) for t in targets]).mean()
    assert mean(clean) < mean(x_b) and mean(clean) < mean(0.5 * clean)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["pure_noise2noise", "extreme_denoising", "progressive_stage1"])
def test_each_noise2noise_experiment_trains_a_tiny_run(tmp_path, experiment):
    result = train(smoke_config(tmp_path, "trainer.max_epochs=1", experiment=experiment))
    for key in (
        "val/si_sdr_i",
        "val/leakage",
        "val/leakage_a",
        "val/leakage_b",
        "val/residual_noise",
        "val/amplitude_retention",
    ):
        assert key in result["metrics"], key
    assert 0.0 <= result["metrics"]["val/leakage"] <= 1.0
    images = {p.name for p in Path(result["run_dir"]).glob("events.*")}
    assert images, "TensorBoard events written"


def _stage2(tmp_path, *extra):
    return smoke_config(tmp_path, "trainer.max_epochs=2", *extra, experiment="progressive_stage2")


def test_stage2_without_stage1_says_which_run_to_do_first(tmp_path):
    with pytest.raises(C.ConfigError, match="make train EXP=progressive_stage1"):
        train(_stage2(tmp_path))


class _StopAfterFirstEpoch(L.Callback):
    enabled = True

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = self.enabled


class _Capture(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        self.optimizer_state = dict(trainer.optimizers[0].state)


@pytest.mark.slow
def test_stage2_starts_from_stage1_weights_with_a_fresh_optimizer_and_resumes_as_stage2(
    tmp_path, monkeypatch
):
    stage1 = train(smoke_config(tmp_path, "trainer.max_epochs=1", experiment="progressive_stage1"))
    stage1_weights = torch.load(stage1["best"], weights_only=True)["state_dict"]

    capture, stop = _Capture(), _StopAfterFirstEpoch()
    original = training_run.build_callbacks
    monkeypatch.setattr(training_run, "build_callbacks", lambda cfg, d: original(cfg, d) + [capture, stop])
    stage2 = train(_stage2(tmp_path))  # interrupted after its first epoch
    for name, tensor in stage1_weights.items():
        torch.testing.assert_close(capture.weights[name], tensor, rtol=0, atol=0, msg=name)
    assert capture.step == 0 and capture.epoch == 0 and capture.optimizer_state == {}
    max_lr = torch.load(stage2["last"], weights_only=True)["optimizer_states"][0]["param_groups"][0]["max_lr"]
    assert max_lr == _stage2(tmp_path).optim.lr, "stage 2's own schedule"

    # Resuming stage 2 continues stage 2: its own weights and step, even with stage 1 gone.
    stage2_last = torch.load(stage2["last"], weights_only=True)
    for p in Path(stage1["run_dir"]).joinpath("checkpoints").iterdir():
        p.unlink()
    capture, stop.enabled = _Capture(), False
    resumed = train(_stage2(tmp_path), resume="latest")
    assert resumed["run_dir"] == stage2["run_dir"]
    assert capture.step == stage2_last["global_step"] > 0
    assert torch.load(resumed["last"], weights_only=True)["epoch"] == 1
    for name, tensor in stage2_last["state_dict"].items():
        torch.testing.assert_close(capture.weights[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_incompatible_stage1_checkpoint_is_a_clear_error(tmp_path):
    stage1 = train(
        smoke_config(
            tmp_path,
            "trainer.max_epochs=1",
            "model.cross_domain.latent_channels=16",
            experiment="progressive_stage1",
        )
    )
    with pytest.raises(C.ConfigError, match="does not fit this experiment's model"):
        train(_stage2(tmp_path, f"system.init_from={stage1['best']}"))


@pytest.mark.slow
def test_sequence_experiment_runs_stages_in_order_and_skips_finished_ones_on_resume(tmp_path, capsys):
    args = [
        f"run.root={tmp_path / 'runs'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "use=[data/smoke,model/tiny]",
        "trainer.max_epochs=1",
    ]
    assert train_mod.main(["progressive", *args]) == 0
    out = capsys.readouterr().out
    assert out.index("progressive_stage1 finished") < out.index("progressive_stage2 finished")
    assert (tmp_path / "runs" / "progressive_stage2" / "version_0" / "metrics.json").is_file()
    assert train_mod.main(["progressive", *args, "--resume"]) == 0
    assert not (tmp_path / "runs" / "progressive_stage1" / "version_1").exists(), (
        "finished stages are not re-run"
    )


def test_content_loss_cannot_be_gamed_by_shrinking_or_shifting_the_latent():
    g = torch.Generator().manual_seed(1)
    shared = torch.randn(8, 4, 3, 5, generator=g)  # what the two noisy copies have in common
    z_a = shared + 0.1 * torch.randn(shared.shape, generator=g)
    z_b = shared + 0.1 * torch.randn(shared.shape, generator=g)
    base = float(losses.content(z_a, z_b))
    assert 0.0 < base < 0.1
    assert float(losses.content(1e-2 * z_a, 1e-2 * z_b)) == __import__("pytest").approx(base, rel=1e-3)
    assert float(losses.content(z_a + 7.0, z_b + 7.0)) == __import__("pytest").approx(base, rel=1e-4)
    # Latents that no longer tell clips apart score worse than informative ones.
    blind_a = 0.1 * torch.randn(shared.shape, generator=g)
    blind_b = 0.1 * torch.randn(shared.shape, generator=g)
    assert float(losses.content(blind_a, blind_b)) > 10 * base


@pytest.mark.slow
def test_side_by_side_experiment_trains_both_on_one_budget_and_the_command_line_wins(tmp_path, capsys):
    args = [
        f"run.root={tmp_path / 'runs'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "use=[data/smoke,model/tiny]",
        "trainer.max_epochs=1",
    ]  # the stages say 4 epochs; the command line has the last word
    assert train_mod.main(["noise2noise_vs_supervised", *args]) == 0
    out = capsys.readouterr().out
    for name in ("supervised", "noise2noise"):
        run = tmp_path / "runs" / "noise2noise_vs_supervised" / name / "version_0"
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0, (
            name
        )  # 0-based: one epoch
        assert f"| noise2noise_vs_supervised/{name} |" in out


def test_source_skip_cross_path_reads_the_source_copys_skips_and_never_the_targets():
    """Classic Noise2Noise U-Net: cross_a = decoder_a(z_b, skips of x_b). Its skips carry x_b's noise, which
    is independent of x_a's, so the target's noise cannot leak through them."""
    torch.manual_seed(0)
    net = _trained_like(CrossDomainNet(**{**TINY, "strategy": "source_skip"}))
    x_a, x_b = torch.randn(2, 1, 4000), torch.randn(2, 1, 4000)
    with torch.no_grad():
        a, b = net.encode(x_a), net.encode(x_b)
        out = net.cross(net.decoder_a, b, a, x_b)
        target_tampered = dataclasses.replace(a, skips=[torch.randn_like(s) * 10 for s in a.skips])
        source_tampered = dataclasses.replace(b, skips=[torch.randn_like(s) * 10 for s in b.skips])
        torch.testing.assert_close(net.cross(net.decoder_a, b, target_tampered, x_b), out)
        assert not torch.allclose(net.cross(net.decoder_a, source_tampered, a, x_b), out)
        # inference runs through the input's own skips, as the cross path was trained
        enc = net.encode(x_a)
        torch.testing.assert_close(net(x_a), net.decode(net.decoder_a, enc, x_a, enc.skips))


def test_a_shared_decoder_is_one_module_and_old_checkpoints_build_with_two():
    from lightning_app import compat
    from lightning_app.nets import build_net, settings_read_by

    shared = CrossDomainNet(**{**TINY, "shared_decoder": True})
    separate = CrossDomainNet(**TINY)
    assert shared.decoder_b is shared.decoder_a
    decoder_size = sum(p.numel() for p in separate.decoder_b.parameters())
    assert (
        sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in shared.parameters())
        == decoder_size
    )
    # a checkpoint saved before the setting existed carries no shared_decoder: it was trained with two
    earlier = {k: v for k, v in TINY.items() if k != "shared_decoder"}
    settings = compat.upgrade_model_settings("cross_domain", earlier, 1, settings_read_by("cross_domain"))
    rebuilt = build_net("cross_domain", **settings)
    assert rebuilt.decoder_b is not rebuilt.decoder_a
    rebuilt.load_state_dict(separate.state_dict())


def test_cross_snr_is_minimised_by_the_clean_signal_on_average():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 1, 4000, generator=g)
    x_b = clean + 0.5 * torch.randn(clean.shape, generator=g)
    targets = [clean + 0.5 * torch.randn(clean.shape, generator=g) for _ in range(200)]
    mean = lambda est: torch.stack([losses.neg_snr(est, t) for t in targets]).mean()
    assert mean(clean) < mean(x_b) and mean(clean) < mean(0.8 * clean) and mean(clean) < mean(1.2 * clean)


def test_without_a_recon_weight_no_reconstruction_is_decoded_and_the_cross_snr_term_is_logged(tmp_path):
    system, batch = _n2n_batch(tmp_path)
    system.loss_weights = {**system.loss_weights, "recon": 0.0, "cross_snr": 1.0}
    with torch.no_grad():
        paths = system.net.paths(batch["noisy"], batch["noisy_b"], recon=False)
        terms, _ = system.shared_step(batch)
    assert "recon_a" not in paths and "recon_b" not in paths
    assert "recon" not in terms and torch.isfinite(terms["cross_snr"])
    expected = sum(system.loss_weights[k] * terms[k] for k in ("content", "cross", "cross_snr"))
    torch.testing.assert_close(terms["loss"], expected)
