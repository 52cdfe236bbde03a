use crate::helpers::TestApp;

#[tokio::test]
async fn openapi_yaml_is_served_and_describes_the_routes() {
    let app = TestApp::spawn().await;

    let response = app.get("/openapi.yaml").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/yaml"
    );
    let text = response.text().await.expect("text");
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("valid YAML");
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    for path in ["/healthz", "/readyz", "/openapi.yaml"] {
        assert!(
            doc["paths"][path]["get"].is_mapping(),
            "{path} is not described"
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code", "errors"] {
        assert!(
            problem[field].is_mapping(),
            "Problem.{field} is not described"
        );
    }
}

#[test]
fn the_router_and_openapi_yaml_describe_the_same_routes() {
    let doc: serde_norway::Value =
        serde_norway::from_str(mlp_lab::http::OPENAPI_YAML).expect("valid YAML");
    let mut described = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        let path = path.as_str().expect("a path");
        for (method, _) in item.as_mapping().expect("operations") {
            let method = method.as_str().expect("a method");
            if ["get", "post", "put", "delete", "patch", "head", "options"].contains(&method) {
                described.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    let routed: std::collections::BTreeSet<(String, String)> = mlp_lab::http::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();

    let missing: Vec<_> = routed.difference(&described).collect();
    let extra: Vec<_> = described.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not in openapi.yaml: {missing:?}; not routed: {extra:?}"
    );
}

/// Every key of the spec has a value. In a YAML flow mapping an unquoted comma ends the value
/// (`{ const: exact, two-sided }` is `const: exact` plus a key `two-sided` with no value),
/// which silently changes a schema: schemathesis once caught a `const` cut that way.
#[test]
fn no_value_in_openapi_yaml_was_cut_at_a_comma() {
    fn nulls(value: &serde_norway::Value, path: &str, found: &mut Vec<String>) {
        match value {
            serde_norway::Value::Mapping(map) => {
                for (k, v) in map {
                    let key = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
                    let here = format!("{path}/{key}");
                    if v.is_null() {
                        found.push(here.clone());
                    }
                    nulls(v, &here, found);
                }
            }
            serde_norway::Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    nulls(v, &format!("{path}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    let doc: serde_norway::Value =
        serde_norway::from_str(mlp_lab::http::OPENAPI_YAML).expect("valid YAML");
    let mut found = Vec::new();
    nulls(&doc, "", &mut found);
    assert!(found.is_empty(), "keys without a value: {found:#?}");
}

/// Whatever an operation creates is written to the data directory first, so each of them
/// can find it full: 507 `insufficient_storage` is described wherever 201 or 202 is.
#[test]
fn every_operation_that_creates_something_describes_507() {
    let doc: serde_norway::Value =
        serde_norway::from_str(mlp_lab::http::OPENAPI_YAML).expect("valid YAML");
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for (method, operation) in item.as_mapping().expect("operations") {
            let responses = &operation["responses"];
            let creates = !responses["201"].is_null() || !responses["202"].is_null();
            let described = responses["507"]["$ref"].as_str()
                == Some("#/components/responses/InsufficientStorage");
            if creates && !described {
                let (method, path) = (method.as_str(), path.as_str());
                missing.push(format!("{} {}", method.unwrap_or("?"), path.unwrap_or("?")));
            }
        }
    }
    assert!(missing.is_empty(), "no 507 described: {missing:?}");
    let example = &doc["components"]["responses"]["InsufficientStorage"]["content"]
        ["application/problem+json"]["example"];
    assert_eq!(example["status"].as_u64(), Some(507));
}

/// The codes of the error table in `src/http/error/mod.rs` (the one place that maps errors to
/// HTTP) are each in the list of codes that `Problem`'s description in `openapi.yaml` gives
/// clients, so that a new code (`store_unavailable`, say) is not left out of it.
#[test]
fn every_code_of_the_error_table_is_in_openapi_yaml() {
    let table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http/error/mod.rs"
    ))
    .expect("read the error table");
    let codes: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `")?.split('`').next())
        .collect();
    assert!(codes.len() > 15, "the table was not found: {codes:?}");
    let doc: serde_norway::Value =
        serde_norway::from_str(mlp_lab::http::OPENAPI_YAML).expect("valid YAML");
    let listed = doc["components"]["responses"]["Problem"]["description"]
        .as_str()
        .expect("Problem's description");
    let missing: Vec<_> = codes
        .iter()
        .filter(|code| !listed.contains(&format!("`{code}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in openapi.yaml's list of codes: {missing:?}"
    );
}
