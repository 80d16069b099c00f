"""The learner's starter notebook: generated from the solution, graded by the checks, and the
learner's own networks train, checkpoint, resume and report."""

import contextlib
import copy
import json
import re

import nbformat
import pytest
import torch
from torch import nn

from facegan.__main__ import main
from facegan.checkpoint import load_checkpoint
from facegan.config import TrainConfig
from facegan.data import load_faces
from facegan.errors import CheckpointError, ConfigError, FaceGanError
from facegan.evaluate import Evaluator
from facegan.models import build_models
from facegan.report import make_report
from facegan.starter import (
    SOLUTION,
    STARTER,
    StarterError,
    make_starter,
    render,
    write_starter,
)
from facegan.step import train_step
from facegan.trainer import Trainer
from tests.support.runs import tiny_config
from tests.support.steps import textbook_step

ROOT = SOLUTION.parent
TINY = {
    "IMAGE_SIZE": "16",
    "EPOCHS": "1",
    "BATCH_SIZE": "16",
    "Z_SIZE": "16",
    "CONV_DIM": "8",
    "N_IMAGES": "64",
    "EVAL_EVERY": "0",
    "EVAL_N": "16",
    "N_SAMPLES": "16",
    "THREADS": "1",  # the tests' own thread count: two would contend on a 2-core machine
}
# A learner's answers, in the style of the course's two versions: a dataset class, a
# discriminator ending in a 4x4 convolution, so scoring (N, 1, 1, 1), a generator that takes z
# as (N, z_size, 1, 1), and a step that returns floats.
ANSWERS = {
    "def scale(": """
def scale(x, feature_range=(-1, 1)):
    low, high = feature_range
    return x * (high - low) + low
""",
    "class FaceImages(": """
from torch.utils.data import Dataset


class FaceImages(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = torch.tensor(self.images[index]).permute(2, 0, 1).float() / 255
        return scale(image)


dataset = FaceImages(faces.images)
""",
    "class Discriminator(": """
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, conv_dim=64, image_size=32):
        super().__init__()
        layers = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels, size = conv_dim, image_size // 2
        while size > 4:
            layers += [
                nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels * 2),
                nn.LeakyReLU(0.2),
            ]
            channels, size = channels * 2, size // 2
        layers.append(nn.Conv2d(channels, 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
""",
    "class Generator(": """
class Generator(nn.Module):
    def __init__(self, z_size=100, conv_dim=64, image_size=32):
        super().__init__()
        channels, size = conv_dim * image_size // 8, 4
        layers = [
            nn.ConvTranspose2d(z_size, channels, 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
        while size < image_size // 2:
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(),
            ]
            channels, size = channels // 2, size * 2
        layers += [nn.ConvTranspose2d(channels, 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)
""",
    "def weights_init_normal(": """
def weights_init_normal(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
""",
    "def real_loss(": """
def real_loss(d_out, smooth=False):
    labels = torch.full_like(d_out, 0.9 if smooth else 1.0)
    return nn.BCEWithLogitsLoss()(d_out, labels)


def fake_loss(d_out):
    return nn.BCEWithLogitsLoss()(d_out, torch.zeros_like(d_out))
""",
    "d_optimizer = None": """
torch.manual_seed(SEED)
D = Discriminator(CONV_DIM, IMAGE_SIZE)
G = Generator(Z_SIZE, CONV_DIM, IMAGE_SIZE)
D.apply(weights_init_normal)
G.apply(weights_init_normal)
d_optimizer = torch.optim.Adam(D.parameters(), lr=LR, betas=(BETA1, BETA2))
g_optimizer = torch.optim.Adam(G.parameters(), lr=LR, betas=(BETA1, BETA2))
""",
    "def train_step(": """
def train_step(discriminator, generator, d_optimizer, g_optimizer, real_images, z):
    d_optimizer.zero_grad()
    fake_images = generator(z)
    d_real = discriminator(real_images)
    d_fake = discriminator(fake_images.detach())
    d_loss = real_loss(d_real) + fake_loss(d_fake)
    d_loss.backward()
    d_optimizer.step()

    g_optimizer.zero_grad()
    g_loss = real_loss(discriminator(fake_images))
    g_loss.backward()
    g_optimizer.step()
    return {
        "d_loss": d_loss.item(),
        "g_loss": g_loss.item(),
        "d_real": torch.sigmoid(d_real).mean().item(),
        "d_fake": torch.sigmoid(d_fake).mean().item(),
    }
""",
}
# The classic mistake: a sigmoid at the end of D, before a loss that takes logits.
SIGMOID_BUG = (
    "layers.append(nn.Conv2d(channels, 1, 4, 1, 0))",
    "layers += [nn.Conv2d(channels, 1, 4, 1, 0), nn.Sigmoid()]",
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def filled_starter(answers: dict[str, str]) -> nbformat.NotebookNode:
    """The committed starter with each stub cell replaced by the answer that names it."""
    notebook = nbformat.read(STARTER, as_version=4)
    for marker, answer in answers.items():
        (cell,) = [c for c in notebook.cells if c.cell_type == "code" and marker in c.source]
        cell.source = answer.strip()
    return notebook


def outputs_of(executed: nbformat.NotebookNode) -> tuple[list[str], list[tuple[str, dict]]]:
    """The check lines that passed, and each (cell source, error output) of the run."""
    passed, errors = [], []
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                passed += [line for line in output.text.splitlines() if ": passed" in line]
            if output.output_type == "error":
                errors.append((cell.source, output))
    return passed, errors


def run_notebook(notebook: nbformat.NotebookNode, folder, monkeypatch) -> nbformat.NotebookNode:
    """Run a notebook kept outside the project with make_report; its executed copy, read back."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # it imports helpers and problem_unittests
    path = folder / "learner.ipynb"
    nbformat.write(notebook, path)
    with contextlib.suppress(FaceGanError):  # the caller asserts on the executed notebook
        make_report(TINY | {"OUT": str(folder / "run")}, folder / "reports", notebook=path)
    return nbformat.read(folder / "reports" / path.name, as_version=4)


# --- the generated starter ---------------------------------------------------------------------


def test_make_starter_gives_the_committed_starter():
    solution = nbformat.read(SOLUTION, as_version=4)
    assert render(make_starter(solution)) == STARTER.read_text(encoding="utf-8")


def test_the_starter_keeps_the_text_and_has_no_solution_and_no_outputs():
    solution = nbformat.read(SOLUTION, as_version=4)
    starter = nbformat.read(STARTER, as_version=4)
    text = [c.source for c in solution.cells if c.cell_type == "markdown"]
    assert [c.source for c in starter.cells if c.cell_type == "markdown"] == text
    sources = "\n".join(c.source for c in starter.cells)
    assert "SOLUTION" not in sources and "from facegan.models import" not in sources
    assert all(c.cell_type != "raw" for c in starter.cells)
    for cell in (c for c in starter.cells if c.cell_type == "code"):
        assert cell.outputs == [] and cell.execution_count is None
    assert sources.count("raise NotImplementedError(") == 10  # two per network class


def test_the_solution_notebooks_report_leaves_the_stubs_out():
    from nbconvert import HTMLExporter

    solution = nbformat.read(SOLUTION, as_version=4)
    assert sum(c.cell_type == "raw" for c in solution.cells) == 8  # one stub per stage
    html, _ = HTMLExporter().from_notebook_node(solution)
    assert "NotImplementedError" not in html and "BEGIN SOLUTION" in html


def test_a_stub_takes_the_place_and_indentation_of_its_region():
    solution = nbformat.v4.new_notebook()
    solution.cells = [
        nbformat.v4.new_code_cell(
            "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
        ),
        nbformat.v4.new_raw_cell(
            'raise NotImplementedError("f: return 1")',
            metadata={"tags": ["stub"], "raw_mimetype": "text/x-python"},
        ),
    ]
    (cell,) = make_starter(solution).cells
    assert cell.source == 'def f():\n    raise NotImplementedError("f: return 1")'


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ([("code", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION")], "no stub follows it"),
        ([("code", "x = 1"), ("raw", "x = None")], "holds no solution region"),
        ([("code", "### BEGIN SOLUTION\nx = 1"), ("raw", "x = None")], "has 1 and 0"),
    ],
)
def test_regions_and_stubs_that_do_not_pair_up_are_refused(cells, message):
    solution = nbformat.v4.new_notebook()
    stub = {"tags": ["stub"], "raw_mimetype": "text/x-python"}
    solution.cells = [
        nbformat.v4.new_code_cell(source)
        if kind == "code"
        else nbformat.v4.new_raw_cell(source, metadata=stub)
        for kind, source in cells
    ]
    with pytest.raises(StarterError, match=message):
        make_starter(solution)


def test_a_stub_the_report_would_show_is_refused(tmp_path):
    solution = nbformat.v4.new_notebook()
    solution.cells = [
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        nbformat.v4.new_raw_cell("x = None", metadata={"tags": ["stub"]}),
    ]
    nbformat.write(solution, tmp_path / "solution.ipynb")
    with pytest.raises(StarterError, match="report\nwould show it|report would show it"):
        write_starter(tmp_path / "solution.ipynb", tmp_path / "starter.ipynb")
    assert not (tmp_path / "starter.ipynb").exists()


# --- a learner's path ----------------------------------------------------------------------------


def test_the_starter_as_shipped_stops_at_its_first_stage_in_one_line(tmp_path, capsys):
    arguments = ["report", "--notebook", str(STARTER), "--out-dir", str(tmp_path)]
    parameters = TINY | {"OUT": str(tmp_path / "run")}
    for name, value in parameters.items():
        arguments += ["-p", name, value]
    assert main(arguments) == 2
    error = capsys.readouterr().err  # papermill's progress bar, then the one line
    (line,) = [line for line in error.splitlines() if line.startswith("error:")]
    assert "StageNotWritten: test_scale: scale is not written yet" in line
    assert "Traceback" not in error

    executed = nbformat.read(tmp_path / STARTER.name, as_version=4)
    passed, errors = outputs_of(executed)
    ((source, output),) = errors
    assert passed == [] and source == "tests.test_scale(scale)"
    (line,) = [ANSI.sub("", line) for line in output.traceback]  # no traceback, one line
    assert output.ename == "StageNotWritten" and line == output.evalue
    assert line.startswith("test_scale: scale is not written yet: map x from [0, 1] onto")


def test_a_planted_sigmoid_in_d_fails_exactly_the_discriminator_check(tmp_path, monkeypatch):
    answers = copy.deepcopy(ANSWERS)
    old, new = SIGMOID_BUG
    answers["class Discriminator("] = answers["class Discriminator("].replace(old, new)
    executed = run_notebook(filled_starter(answers), tmp_path, monkeypatch)
    passed, errors = outputs_of(executed)
    assert [line.split(":")[0] for line in passed] == ["test_scale", "test_dataset"]
    ((source, output),) = errors
    assert source == "tests.test_discriminator(Discriminator, image_size=IMAGE_SIZE)"
    assert output.ename == "CheckFailure"
    assert "the outputs look bounded (a final sigmoid?)" in output.evalue


@pytest.fixture(scope="module")
def learner_run(tmp_path_factory):
    """The starter with a learner's answers, run end to end once by report --notebook."""
    folder = tmp_path_factory.mktemp("learner")
    with pytest.MonkeyPatch.context() as patch:
        executed = run_notebook(filled_starter(ANSWERS), folder, patch)
    return folder, executed


def test_a_learners_answers_pass_every_check_and_train(learner_run):
    folder, executed = learner_run
    passed, errors = outputs_of(executed)
    assert errors == []
    assert len(passed) == 8, passed
    generator_line = next(line for line in passed if line.startswith("test_generator"))
    assert "z=4d (N, z_size, 1, 1)" in generator_line
    assert (folder / "reports" / "learner.html").exists()
    assert (folder / "run" / "samples" / "epoch_001.png").exists()
    assert (folder / "run" / "final_samples.png").exists()


def test_a_learners_checkpoint_says_its_networks_come_from_the_notebook(learner_run, capsys):
    folder, _ = learner_run
    checkpoint = folder / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(checkpoint)
    assert state["models"] == {
        "source": "notebook",
        "discriminator": "Discriminator",
        "generator": "Generator",
    }
    for command in (["sample"], ["eval", "--n", "4"]):
        assert main([*command, "--checkpoint", str(checkpoint)]) == 2
        error = capsys.readouterr().err
        assert "holds networks defined in the notebook (class Generator)" in error
        assert len(error.strip().splitlines()) == 1


def test_report_names_a_missing_notebook(tmp_path):
    with pytest.raises(FaceGanError, match="does not exist: give --notebook the path"):
        make_report({}, tmp_path, notebook=tmp_path / "missing.ipynb")


# --- the Trainer with given networks, optimizers and step ----------------------------------------


class Discriminator(nn.Module):
    """A learner's discriminator for 16 px, scoring (N, 1, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 8, 1, 0)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class Generator(nn.Module):
    """A learner's generator that takes z as (N, 8, 1, 1) only."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 4, 1, 0),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 3, 4, 4, 0),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.dim() == 4, "this generator takes z as (N, z_size, 1, 1)"
        return self.net(z)


# As a notebook defines them: in the module __main__.
Discriminator.__module__ = Generator.__module__ = "__main__"


def learners_trainer(out, **settings) -> Trainer:
    config = TrainConfig(
        **{
            "data": "synthetic",
            "image_size": 16,
            "epochs": 2,
            "batch_size": 8,
            "z_size": 8,
            "n_images": 32,
            "ema": 0.9,
            "n_samples": 4,
            "log_every": 2,
            "out": str(out),
            "device": "cpu",
        }
        | settings
    )
    torch.manual_seed(0)
    discriminator, generator = Discriminator(), Generator()
    optimizers = [
        torch.optim.Adam(m.parameters(), 2e-4, (0.5, 0.999)) for m in (discriminator, generator)
    ]
    faces = load_faces("synthetic", 16, 32, progress=False)
    # Faces found alone: the built-in faces' coverage would first train its classifier.
    evaluator = Evaluator(faces.images, False, "learner", ("faces_found",), progress=False)
    return Trainer(
        config,
        faces,
        evaluator,
        discriminator=discriminator,
        generator=generator,
        d_optimizer=optimizers[0],
        g_optimizer=optimizers[1],
        train_step=textbook_step,  # a learner's step, returning floats
        z_shape="4d",
    )


def test_given_networks_and_step_train_sample_evaluate_and_resume_bitwise(tmp_path):
    unbroken = learners_trainer(tmp_path / "unbroken")
    history = unbroken.fit(progress=False)
    assert [row["step"] for row in history] == [2, 4, 6, 8]
    assert all(isinstance(row["d_loss"], float) for row in history)
    assert (tmp_path / "unbroken" / "samples" / "epoch_002.png").exists()
    faces = unbroken.evaluate(progress=False)  # draws flat z, as every sampler does
    assert faces["n"] == unbroken.config.eval_n

    stopped = learners_trainer(tmp_path / "resumed")
    stopped.fit(progress=False, max_steps=5)
    resumed = learners_trainer(tmp_path / "resumed")
    resumed.resume()
    resumed.fit(progress=False)
    for name, value in unbroken.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[name]), name


def test_a_learners_checkpoint_refuses_to_resume_with_other_networks(tmp_path):
    learners_trainer(tmp_path, epochs=1).fit(progress=False)
    config = TrainConfig(**json.loads((tmp_path / "config.json").read_text()))
    with pytest.raises(CheckpointError, match="defined in the notebook, but this run has"):
        Trainer(config).resume()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"loss": "hinge"}, "loss 'hinge'"),
        ({"smooth": True}, "smooth"),
        ({"precision": "bf16"}, "precision 'bf16'"),
        ({"d_norm": "spectral"}, "d_norm 'spectral'"),
    ],
)
def test_settings_a_learners_networks_and_step_would_ignore_are_refused(tmp_path, settings, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        learners_trainer(tmp_path, **settings)


def test_given_optimizers_need_their_networks(tmp_path):
    config = TrainConfig(image_size=16, batch_size=8, n_images=32, out=str(tmp_path))
    adam = torch.optim.Adam(Discriminator().parameters())
    with pytest.raises(ConfigError, match="over given networks"):
        Trainer(config, d_optimizer=adam, g_optimizer=adam)
    with pytest.raises(ConfigError, match="z_shape '3d' is unknown"):
        Trainer(config, z_shape="3d")


def test_facegans_own_networks_and_step_given_explicitly_keep_the_recipe(tmp_path):
    config = tiny_config(
        tmp_path, batch_size=8, n_images=32, loss="hinge", d_norm="spectral", device="cpu"
    )
    discriminator, generator = build_models(8, 4, 16, "spectral")
    trainer = Trainer(
        config, discriminator=discriminator, generator=generator, train_step=train_step
    )
    assert trainer.given_step is None  # called with the recipe's options, loss hinge included
    assert trainer.state_dict()["models"]["source"] == "facegan"
