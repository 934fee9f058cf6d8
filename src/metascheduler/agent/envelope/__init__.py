"""What a job brings and where it runs: fetching pinned files (``fetch``), the image cache
(``cache``), the container runtimes (``runtime``) and staging a job before it starts
(``staging``)."""
