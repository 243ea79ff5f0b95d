"""Pictures drawn from the table and from runs: state diagrams, timelines, HTML reports."""
