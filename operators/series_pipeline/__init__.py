"""The series selection pipeline: its definition, local and Docker runners, Argo export."""
