"""`vmlb worker` creates the tables' changelogs itself; their names must be Faust's own."""

from pipeline.settings import KafkaSettings, PipelineSettings
from pipeline.topics import TABLES, changelog_specs
from pipeline.worker.app import create_app


def test_changelog_specs_name_and_size_every_table_as_faust_does(tmp_path):
    pipeline = create_app(
        KafkaSettings(topic_prefix="t."),
        PipelineSettings(app_id="cl-test", store="memory://", data_dir=str(tmp_path)),
    )
    faust_names = {
        name: table.changelog_topic.get_topic_name() for name, table in pipeline.app.tables.items()
    }
    assert set(faust_names) == set(TABLES)
    specs = {spec.name: spec for spec in changelog_specs("cl-test", partitions=6)}
    assert set(specs) == set(faust_names.values())
    for name, table in pipeline.app.tables.items():
        spec = specs[faust_names[name]]
        assert spec.partitions == table.partitions
        assert spec.config["cleanup.policy"] == "compact"
